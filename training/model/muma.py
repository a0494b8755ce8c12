"""The MUMA ranker: embeddings -> behaviour encoder + HIN graph -> domain towers -> heads.

Per impression it combines

* the user's embedding and dense features, the candidate's item-side vector and dense features;
* the user's interest towards the candidate from :class:`~.encoder.BehaviourEncoder` (LSTM over
  the long history, Transformer over the recent window, DIN target attention with a learnt
  time decay, gated fusion);
* graph representations of the user and the candidate from metapath neighbours
  (:class:`~.graph.MetapathAggregator`), shared across news, video and ads;

feeds them through a shared bottom and the candidate's domain tower, and returns the click
logit (plus the slot's position bias) and the auxiliary dwell prediction. Optimiser, loss and
device placement belong to the training loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.batch import Batch

from .config import MumaConfig, item_side_dim
from .embeddings import FeatureEmbeddings
from .encoder import BehaviourEncoder, EncodedInterest, distinct_histories
from .graph import CategoryAffinity, MetapathAggregator, path_summaries
from .heads import ClickDwellHead, PositionBias, RankerOutput
from .metapaths import resolve
from .towers import DomainTowers


class MumaRanker(nn.Module):
    """Multi-domain ranker with time-decayed LSTM-Transformer interests and HIN transfer.

    Args:
        config: Feature space, block sizes and ablation switches.
    """

    def __init__(self, config: MumaConfig) -> None:
        super().__init__()
        self.config = config
        features = config.features
        dim, item_dim = config.embedding.dim, item_side_dim(config.embedding)
        self.embeddings = FeatureEmbeddings(features, config.embedding)
        self.encoder = BehaviourEncoder(
            item_dim,
            features.domains,
            config.encoder,
            use_lstm=not config.no_lstm,
            use_transformer=not config.no_transformer,
            use_time_decay=not config.no_time_decay,
        )
        self.user_metapaths = resolve(config.graph.user_metapaths, "user")
        self.item_metapaths = resolve(config.graph.item_metapaths, "item")
        if config.no_graph:
            self.user_graph: MetapathAggregator | None = None
            self.item_graph: MetapathAggregator | None = None
        else:
            self.user_graph = MetapathAggregator(dim, config.graph.semantic_hidden)
            self.item_graph = MetapathAggregator(dim, config.graph.semantic_hidden)
        self.affinity = (
            CategoryAffinity(features.category_affinity)
            if features.category_affinity and not config.no_graph
            else None
        )
        graph_width = 0 if config.no_graph else 2 * dim
        graph_width += 0 if self.affinity is None else self.affinity.width
        input_dim = dim + 2 * item_dim + graph_width + features.user_dense + features.item_dense
        self.towers = DomainTowers(
            input_dim,
            config.towers.bottom,
            config.towers.tower,
            features.domains,
            config.towers.dropout,
        )
        self.position_bias = PositionBias(dim)
        self.head = ClickDwellHead(self.towers.output_dim, dwell=config.dwell_head)

    def candidate(self, batch: Batch) -> Tensor:
        """Item-side vectors of the candidates, ``B x D_item``."""
        return self.embeddings.item_side(
            batch.item_id, batch.category_id, batch.domain_id, batch.creator_id
        )

    def interest(self, batch: Batch, candidate: Tensor | None = None) -> EncodedInterest:
        """The encoder's output for ``batch`` (interest ``B x D_item`` and attention weights).

        Args:
            batch: The batch.
            candidate: ``B x D_item`` from :meth:`candidate`, if already computed.
        """
        embeddings = self.embeddings
        candidate = self.candidate(batch) if candidate is None else candidate
        shared = distinct_histories(
            batch.long_item_id, batch.long_mask, batch.recent_item_id, batch.recent_mask
        )
        rows = slice(None) if shared is None else shared[0]  # one row per distinct history
        long_behaviours = embeddings.item_side(
            batch.long_item_id[rows], batch.long_category_id[rows], batch.long_domain_id[rows]
        )  # B (or U distinct) x L_long x D_item
        recent_behaviours = embeddings.item_side(
            batch.recent_item_id[rows], batch.recent_category_id[rows], batch.recent_domain_id[rows]
        )  # B (or U distinct) x L_recent x D_item
        return self.encoder(
            candidate,
            long_behaviours,
            batch.long_domain_id,
            batch.long_gap_hours,
            batch.long_mask,
            recent_behaviours,
            batch.recent_domain_id,
            batch.recent_gap_hours,
            batch.recent_mask,
            shared,
        )

    def forward(self, batch: Batch) -> RankerOutput:
        """Click logits ``B`` and dwell predictions ``B`` (``None`` without the dwell head).

        Raises:
            ValueError: The batch's dense widths or metapath counts differ from the config.
        """
        hidden = self.hidden(batch)  # B x H
        position = self.position_bias(self.embeddings.position(batch.position))  # B
        return self.head(hidden, position)

    def hidden(self, batch: Batch) -> Tensor:
        """The domain towers' last hidden layer ``B x H`` (the neural-linear bandit's features).

        Raises:
            ValueError: The batch's dense widths or metapath counts differ from the config.
        """
        self._check(batch)
        embeddings = self.embeddings
        candidate = self.candidate(batch)  # B x D_item
        interest = self.interest(batch, candidate).interest  # B x D_item
        parts = [embeddings.user(batch.user_id), candidate, interest]
        if self.user_graph is not None and self.item_graph is not None:
            user_paths = path_summaries(
                batch.user_paths,
                batch.user_paths_mask,
                self.user_metapaths,
                embeddings.user,
                embeddings.item,
            )  # B x P_u x D
            item_paths = path_summaries(
                batch.item_paths,
                batch.item_paths_mask,
                self.item_metapaths,
                embeddings.user,
                embeddings.item,
            )  # B x P_i x D
            parts.append(self.user_graph(user_paths, batch.user_paths_mask.any(-1)))  # B x D
            parts.append(self.item_graph(item_paths, batch.item_paths_mask.any(-1)))  # B x D
        if self.affinity is not None:
            parts.append(self.affinity(batch.user_dense, batch.domain_id, batch.category_id))
        parts += [batch.user_dense, batch.item_dense]
        return self.towers(torch.cat(parts, dim=-1), batch.domain_id)  # B x H

    def _check(self, batch: Batch) -> None:
        features = self.config.features
        expected = {
            "user_dense width": (batch.user_dense.shape[1], features.user_dense),
            "item_dense width": (batch.item_dense.shape[1], features.item_dense),
            "user metapaths": (batch.user_paths.shape[1], len(self.user_metapaths)),
            "item metapaths": (batch.item_paths.shape[1], len(self.item_metapaths)),
        }
        for name, (got, want) in expected.items():
            if got != want:
                raise ValueError(f"batch has {got} {name}, the model was built for {want}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
