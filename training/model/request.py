"""MUMA's forward pass for one user and many candidates: the serving fast path.

A recommendation request scores ``N`` candidates for one user. :meth:`.MumaRanker.forward`
takes them as ``N`` independent impressions, so it embeds the user, walks the user's graph
neighbours, computes the history's time-decay bias and gathers the history keys ``N`` times,
and recomputes every candidate's item graph representation, although most of that is the same
on every row or depends on the candidate item alone. :class:`RequestRanker` computes the same
logits and hidden layer with each part done where it changes:

* once per loaded model: the item graph representation of every item of the catalogue (its
  metapath summaries and the semantic attention over them; an ``I x D`` table gathered by item
  id), and the weight matrices below rearranged;
* once per request: the user's embedding, graph representation and dense features, and their
  share of the shared bottom's first layer (a ``1 x bottom`` row); the history's LSTM and
  Transformer keys and their time-decay bias, on the real behaviours only;
* once per candidate: its item-side vector, the target attention, the gate, the rest of the
  shared bottom and its domain's tower. The attention MLP's first layer over
  ``[q, k, q - k, q * k]`` is linear in the query ``q``, so for one history it is a single
  ``N x (D + 1)`` by ``(D + 1) x (L H)`` matrix product (:meth:`RequestRanker.attend`).

The arithmetic is the model's own, reordered: ``tests/serving/test_fast_scoring.py`` checks the
logits and hidden layer against :meth:`.MumaRanker.forward` on the broadcast batch (1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

from .attention import TargetAttention
from .graph import path_summaries
from .muma import MumaRanker


@dataclass(frozen=True, slots=True)
class RequestInputs:
    """One user's request: the user's part (leading size 1) and ``N`` candidates.

    Ids follow :class:`training.batch.Batch` (cold ids already mapped to unknown, 0 padding),
    except ``graph_item_id``: the candidates' own vocabulary ids, the rows of the item graph
    table (a cold item keeps its graph neighbours, as in the featurizer's batch).

    Attributes:
        user_id: ``1`` int64.
        user_dense: ``1 x F_u`` float32.
        user_paths: ``1 x P_u x K`` int64 metapath neighbours of the user.
        long_item_id: ``1 x L_long`` int64 (oldest first, left-aligned).
        long_category_id: ``1 x L_long`` int64.
        long_domain_id: ``1 x L_long`` int64.
        long_gap_hours: ``1 x L_long`` float32.
        recent_item_id: ``1 x L_recent`` int64.
        recent_category_id: ``1 x L_recent`` int64.
        recent_domain_id: ``1 x L_recent`` int64.
        recent_gap_hours: ``1 x L_recent`` float32.
        item_id: ``N`` int64.
        graph_item_id: ``N`` int64.
        category_id: ``N`` int64.
        creator_id: ``N`` int64.
        domain_id: ``N`` int64 in ``1..domains``.
        item_dense: ``N x F_i`` float32.
        position: The slot every candidate is scored at.
    """

    user_id: Tensor
    user_dense: Tensor
    user_paths: Tensor
    long_item_id: Tensor
    long_category_id: Tensor
    long_domain_id: Tensor
    long_gap_hours: Tensor
    recent_item_id: Tensor
    recent_category_id: Tensor
    recent_domain_id: Tensor
    recent_gap_hours: Tensor
    item_id: Tensor
    graph_item_id: Tensor
    category_id: Tensor
    creator_id: Tensor
    domain_id: Tensor
    item_dense: Tensor
    position: int

    def __len__(self) -> int:
        return int(self.item_id.shape[0])


@dataclass(frozen=True, slots=True)
class _Attention:
    """A :class:`TargetAttention`'s weights rearranged for one query matrix and one history."""

    query: Tensor  # H x D: W_q + W_d
    key: Tensor  # H x D: W_k - W_d
    product: Tensor  # D x H: W_p transposed
    bias: Tensor  # H
    relu: bool  # the MLP's first activation is a ReLU (applied in place)
    rest: nn.Module  # the MLP after its first layer (and that ReLU)
    softmax: bool

    @classmethod
    def of(cls, attention: TargetAttention) -> _Attention:
        first = attention.score[0]
        w_query, w_key, w_diff, w_product = first.weight.split(first.in_features // 4, dim=1)
        rest = attention.score[1:]
        relu = len(rest) > 0 and isinstance(rest[0], nn.ReLU)
        return cls(
            (w_query + w_diff).contiguous(),
            (w_key - w_diff).contiguous(),
            w_product.t().contiguous(),
            first.bias,
            relu,
            rest[1:] if relu else rest,
            attention.softmax,
        )


class RequestRanker:
    """Scores one user's candidates with a loaded :class:`.MumaRanker` (see the module doc).

    The model's weights are read when this is built: build a new one for another model (the
    serving reload does, one per loaded bundle).

    Args:
        model: The ranker, in eval mode; it is not modified.
        item_neighbours: ``I x P_i x K`` metapath neighbours of every item id (the
            featurizer's ``item_neighbours``).
        temperature: Calibration temperature (logits are divided by it).
        chunk: Items per step when the item graph table is built.

    Raises:
        ValueError: ``item_neighbours`` has another number of metapaths than the model.
    """

    def __init__(
        self,
        model: MumaRanker,
        item_neighbours: Tensor,
        temperature: float = 1.0,
        chunk: int = 16384,
    ) -> None:
        if model.training:
            raise ValueError("RequestRanker needs a model in eval mode")
        self.model = model
        self.temperature = float(temperature)
        features = model.config.features
        if item_neighbours.dim() != 3 or item_neighbours.shape[1] != len(model.item_metapaths):
            raise ValueError(
                f"item neighbours of shape {tuple(item_neighbours.shape)} do not fit the "
                f"model's {len(model.item_metapaths)} item metapaths"
            )
        embeddings = model.embeddings
        dim, item_dim = embeddings.dim, embeddings.item_dim
        graph = model.user_graph is not None and model.item_graph is not None
        affinity = 0 if model.affinity is None else model.affinity.width
        # The shared bottom's input, in MumaRanker.hidden's order: which blocks vary by row.
        blocks = [("user", dim, False), ("candidate", item_dim, True), ("interest", item_dim, True)]
        if graph:
            blocks += [("user_graph", dim, False), ("item_graph", dim, True)]
        if affinity:
            blocks.append(("affinity", affinity, True))
        blocks += [
            ("user_dense", features.user_dense, False),
            ("item_dense", features.item_dense, True),
        ]
        first = model.towers.bottom[0]
        if first.in_features != sum(width for _, width, _ in blocks):
            raise ValueError("the model's shared bottom does not fit its feature widths")
        columns = first.weight.split([width for _, width, _ in blocks], dim=1)
        with torch.inference_mode():
            self._user_weight = torch.cat(
                [w for w, (_, _, varies) in zip(columns, blocks, strict=True) if not varies], dim=1
            )
            self._row_weight = torch.cat(
                [w for w, (_, _, varies) in zip(columns, blocks, strict=True) if varies], dim=1
            )
            self._bottom_bias = first.bias
            encoder = model.encoder
            self._long = _Attention.of(encoder.long_attention)
            self._recent = _Attention.of(encoder.recent_attention)
            self.item_graph = self._item_graph_table(item_neighbours, chunk) if graph else None

    # ------------------------------------------------------------------------ per model
    def _item_graph_table(self, neighbours: Tensor, chunk: int) -> Tensor:
        """``I x D``: the item graph representation of every item id."""
        model = self.model
        assert model.item_graph is not None
        parts = []
        for start in range(0, neighbours.shape[0], chunk):
            ids = neighbours[start : start + chunk].long()  # C x P_i x K
            mask = ids > 0
            summaries = path_summaries(
                ids, mask, model.item_metapaths, model.embeddings.user, model.embeddings.item
            )  # C x P_i x D
            parts.append(model.item_graph(summaries, mask.any(-1)))  # C x D
        return torch.cat(parts)

    # ---------------------------------------------------------------------- per request
    def logits(self, inputs: RequestInputs) -> Tensor:
        """Calibrated click logits ``N``, as :meth:`training.bundle.ModelBundle.logits`."""
        return self.scores(inputs)[0]

    def scores(self, inputs: RequestInputs) -> tuple[Tensor, Tensor]:
        """``(logits N, hidden N x H)``: calibrated logits and the towers' last hidden layer.

        Raises:
            ValueError: Inputs whose widths do not fit the model, or a candidate domain id
                outside ``1..domains``.
        """
        with torch.inference_mode():
            hidden = self._hidden(inputs)  # N x H
            model = self.model
            position = torch.tensor([inputs.position], dtype=torch.int64)
            bias = model.position_bias(model.embeddings.position(position))  # 1
            logits = model.head.click(hidden).squeeze(-1) + bias  # N
            return logits / self.temperature, hidden

    def _hidden(self, inputs: RequestInputs) -> Tensor:
        model = self.model
        self._check(inputs)
        embeddings = model.embeddings
        rows = len(inputs)
        candidate = embeddings.item_side(
            inputs.item_id, inputs.category_id, inputs.domain_id, inputs.creator_id
        )  # N x D_item
        interest = self._interest(inputs, candidate)  # N x D_item
        user_parts = [embeddings.user(inputs.user_id)]  # 1 x D
        row_parts = [candidate, interest]
        if self.item_graph is not None:
            assert model.user_graph is not None
            user_paths = inputs.user_paths
            summaries = path_summaries(
                user_paths,
                user_paths > 0,
                model.user_metapaths,
                embeddings.user,
                embeddings.item,
            )  # 1 x P_u x D
            user_parts.append(model.user_graph(summaries, (user_paths > 0).any(-1)))  # 1 x D
            row_parts.append(self.item_graph[inputs.graph_item_id])  # N x D
        if model.affinity is not None:
            user_dense = inputs.user_dense.expand(rows, -1)  # N x F_u
            row_parts.append(model.affinity(user_dense, inputs.domain_id, inputs.category_id))
        user_parts.append(inputs.user_dense)
        row_parts.append(inputs.item_dense)
        user_row = functional.linear(
            torch.cat(user_parts, dim=-1), self._user_weight, self._bottom_bias
        )  # 1 x bottom
        first = functional.linear(torch.cat(row_parts, dim=-1), self._row_weight)  # N x bottom
        shared = model.towers.bottom[1:](first + user_row)  # N x bottom[-1]
        return self._towers(shared, inputs.domain_id)  # N x H

    def _towers(self, shared: Tensor, domain_id: Tensor) -> Tensor:
        """Each row through its domain's tower (:class:`.DomainTowers`, rows routed once)."""
        towers = self.model.towers.towers
        output = shared.new_empty(shared.shape[0], self.model.towers.output_dim)  # N x H
        for index, tower in enumerate(towers):
            rows = torch.nonzero(domain_id == index + 1).squeeze(1)
            if rows.numel() == 0:
                continue
            if rows.numel() == int(rows[-1] - rows[0]) + 1:  # contiguous: no gather
                start, stop = int(rows[0]), int(rows[-1]) + 1
                output[start:stop] = tower(shared[start:stop])
            else:
                output[rows] = tower(shared[rows])
        return output

    def _interest(self, inputs: RequestInputs, candidate: Tensor) -> Tensor:
        """The encoder's fused interest ``N x D_item`` of the user towards each candidate."""
        embeddings, encoder = self.model.embeddings, self.model.encoder
        long_mask = inputs.long_item_id > 0  # 1 x L_long
        recent_mask = inputs.recent_item_id > 0  # 1 x L_recent
        long_behaviours = embeddings.item_side(
            inputs.long_item_id, inputs.long_category_id, inputs.long_domain_id
        )  # 1 x L_long x D_item
        recent_behaviours = embeddings.item_side(
            inputs.recent_item_id, inputs.recent_category_id, inputs.recent_domain_id
        )  # 1 x L_recent x D_item
        long_keys = encoder.encode_long(long_behaviours, long_mask)[0]  # L_long x D_item
        recent_keys = encoder.encode_recent(recent_behaviours, recent_mask)[0]
        long_bias = recent_bias = None
        if encoder.decay is not None:
            long_bias = encoder.decay(inputs.long_domain_id, inputs.long_gap_hours)[0]  # L_long
            recent_bias = encoder.decay(inputs.recent_domain_id, inputs.recent_gap_hours)[0]
        long_interest = self.attend(self._long, candidate, long_keys, long_mask[0], long_bias)
        recent_interest = self.attend(
            self._recent, candidate, recent_keys, recent_mask[0], recent_bias
        )  # N x D_item
        gate = torch.sigmoid(
            encoder.gate(torch.cat([long_interest, recent_interest, candidate], dim=-1))
        )  # N x D_item
        return gate * long_interest + (1 - gate) * recent_interest

    @staticmethod
    def attend(
        attention: _Attention, query: Tensor, keys: Tensor, mask: Tensor, bias: Tensor | None
    ) -> Tensor:
        """Target attention of ``N`` queries over one history, pooled: ``N x D``.

        Padding gets weight exactly zero in the model, so only the real behaviours ``L'`` are
        scored. With ``A = W_q + W_d``, the first layer's pre-activation of query ``n`` and
        behaviour ``l`` is ``sum_d q[n, d] (k[l, d] W_p[h, d] + A[h, d]) + (W_k - W_d) k[l] +
        b``: one matrix product of ``[q, 1]`` (``N x (D + 1)``) by a ``(D + 1) x (L' H)``
        matrix built from the keys.

        Args:
            attention: The rearranged weights.
            query: ``N x D`` candidate vectors.
            keys: ``L x D`` encoded behaviours.
            mask: ``L`` bool, real behaviours.
            bias: ``L`` additive score bias (log time decay), or None.
        """
        rows, dim = query.shape
        real = torch.nonzero(mask).squeeze(1)
        if real.numel() == 0:  # no behaviour: the model's weights are all zero
            return query.new_zeros(rows, keys.shape[1])
        if real.numel() < keys.shape[0]:
            keys = keys[real]  # L' x D
            bias = None if bias is None else bias[real]
        length, hidden = keys.shape[0], attention.bias.shape[0]
        table = query.new_empty(dim + 1, length, hidden)  # (D + 1) x L' x H
        torch.mul(keys.t().unsqueeze(-1), attention.product.unsqueeze(1), out=table[:dim])
        table[:dim] += attention.query.t().unsqueeze(1)
        table[dim] = functional.linear(keys, attention.key, attention.bias)  # L' x H
        ones = query.new_ones(rows, 1)
        first = torch.cat([query, ones], dim=1) @ table.view(dim + 1, length * hidden)
        if attention.relu:
            functional.relu_(first)
        scores = attention.rest(first.view(rows, length, hidden)).squeeze(-1)  # N x L'
        if bias is not None:
            scores = scores + bias
        weights = scores.softmax(dim=-1) if attention.softmax else scores  # N x L'
        return weights @ keys  # N x D

    def _check(self, inputs: RequestInputs) -> None:
        features = self.model.config.features
        domains = len(self.model.towers.towers)
        expected = {
            "user_dense width": (inputs.user_dense.shape[-1], features.user_dense),
            "item_dense width": (inputs.item_dense.shape[-1], features.item_dense),
            "user metapaths": (inputs.user_paths.shape[1], len(self.model.user_metapaths)),
        }
        for name, (got, want) in expected.items():
            if got != want:
                raise ValueError(f"request has {got} {name}, the model was built for {want}")
        domain_id = inputs.domain_id
        if domain_id.numel() and (int(domain_id.min()) < 1 or int(domain_id.max()) > domains):
            raise ValueError(f"candidate domain ids must lie in 1..{domains}")
