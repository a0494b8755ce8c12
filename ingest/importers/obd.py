"""Open Bandit Dataset (ZOZOTOWN, Saito et al. 2020) into the landing contract.

Each row of ``<policy>/<campaign>/<campaign>.csv`` becomes an ``impressions`` record with the
*logged* propensity score, and a ``clicks`` record when ``click == 1``. ``item_context.csv``
becomes ``items``. OBD has no user id and its categorical features are hashed with a salt
that differs between the two policies' files; both are handled as described in
``docs/importers.md``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from muma.contract import Domain, Source

from .common import CLICK_DELAY_MS, HOUR_MS, ImportSummary, account, land, timer

POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
DOMAIN = Domain.AD
"""OBD logs fashion items recommended in a shop's carousel: the closest contract domain is ad."""
CREATOR_ID = "obd-unknown"
"""OBD does not say which brand or seller an item belongs to."""
USER_FEATURES = [f"user_feature_{index}" for index in range(4)]
DAY_MS = 24 * HOUR_MS


def policy_name(policy: str) -> str:
    """Landing ``policy`` of an OBD logging policy (``obd_random``, ``obd_bts``)."""
    return f"obd_{policy}"


def log_path(source_path: Path, policy: str, campaign: str) -> Path:
    """CSV of one OBD log: ``<root>/<policy>/<campaign>/<campaign>.csv``."""
    return Path(source_path) / policy / campaign / f"{campaign}.csv"


def user_segment_id(features: pd.DataFrame, campaign: str) -> pd.Series:
    """A stable user id from OBD's four hashed user features.

    OBD publishes no user id. The id is a hash of the four feature values, so it names a
    *segment* of users that share those features, not one person.
    """
    joined = features[USER_FEATURES].astype(str).agg("|".join, axis=1)
    return joined.map(
        lambda value: (
            f"obd-{campaign}-u" + hashlib.blake2b(value.encode(), digest_size=8).hexdigest()
        )
    )


def _group_labels(items: pd.DataFrame, column: str) -> pd.Series:
    """Name each value of a hashed item feature by the smallest item id that has it.

    The hashes differ between the random and the BTS files of a campaign, but the grouping of
    items they induce does not, so these labels are the same whichever file is imported.
    """
    smallest = items.groupby(column)["item_id"].transform("min")
    return smallest.map(lambda item_id: f"g{item_id}")


def import_obd(
    source_path: Path,
    landing_root: Path,
    policy: str = "random",
    campaign: str = "all",
    limit: int | None = None,
) -> ImportSummary:
    """Import one OBD log (a policy and a campaign) and its item context.

    Args:
        source_path: The OBD root holding ``random/`` and ``bts/``.
        landing_root: Landing root to write ``v1/<source>/date=/hour=`` partitions under.
        policy: Logging policy, ``random`` (uniform) or ``bts`` (Bernoulli Thompson sampling).
        campaign: ``all``, ``men`` or ``women``.
        limit: Read only the first ``limit`` rows of the log (items are always read whole).

    Returns:
        Counts per input unit and landing source; ``summary.reconciles()`` holds.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign must be one of {CAMPAIGNS}, got {campaign!r}")
    began = timer()
    source_path, landing_root = Path(source_path), Path(landing_root)
    part = f"obd-{policy}-{campaign}"
    summary = ImportSummary("obd", landing_root, part=part)
    csv_path = log_path(source_path, policy, campaign)
    log = pd.read_csv(csv_path, index_col=0, nrows=limit)
    log_name = f"{policy}/{campaign}/{campaign}.csv rows"
    log_in = summary.input(log_name)
    log_in.read = len(log)

    stamps = pd.to_datetime(log["timestamp"], utc=True, errors="coerce")
    # Epoch ms; sub-millisecond digits are dropped (the contract writes milliseconds).
    ts = pd.Series(
        (
            stamps.dt.tz_convert(None)
            .astype("datetime64[ms]")
            .astype("int64")
            .where(stamps.notna(), -1)
        ),
        index=log.index,
        dtype="int64",
    )
    bad_time = stamps.isna().to_numpy()
    log_in.skip("unparseable_timestamp", bad_time.sum())

    # items: read whole; published at the start of the log's first day (OBD has no time)
    item_context = pd.read_csv(csv_path.parent / "item_context.csv", index_col=0)
    items_in = summary.input("item_context.csv rows")
    items_in.read = len(item_context)
    first_ts = int(ts[~bad_time].min()) if (~bad_time).any() else 0
    catalog_ts = first_ts - first_ts % DAY_MS
    top = _group_labels(item_context, "item_feature_3")
    sub = _group_labels(item_context, "item_feature_2")
    other = _group_labels(item_context, "item_feature_1")
    items_frame = pl.DataFrame(
        {
            "event_id": [f"obd-item-{campaign}-{i}" for i in item_context["item_id"]],
            "ts": np.full(len(item_context), catalog_ts, dtype=np.int64),
            "item_id": [f"obd-{campaign}-{i}" for i in item_context["item_id"]],
            "domain": str(DOMAIN),
            "category": [f"obd-{campaign}-{label}" for label in top],
            "creator_id": CREATOR_ID,
            "title": [f"obd {campaign} item {i}" for i in item_context["item_id"]],
            "text": [
                f"item_feature_0={price!r}; item_feature_1={o}; item_feature_2={s}; "
                f"item_feature_3={t}"
                for price, o, s, t in zip(
                    item_context["item_feature_0"], other, sub, top, strict=True
                )
            ],
            "publish_ts": np.full(len(item_context), catalog_ts, dtype=np.int64),
        }
    )
    # The catalogue file is shared by the policies of a campaign: re-imports replace it.
    landed_items = land(landing_root, Source.ITEMS, items_frame, f"obd-{campaign}-items", summary)
    summary.notes["items_file"] = f"obd-{campaign}-items.jsonl.gz"
    account(items_in, landed_items)
    known_items = set(item_context["item_id"][landed_items.valid])

    propensity = pd.to_numeric(log["propensity_score"], errors="coerce")
    bad_propensity = ~bad_time & ~((propensity > 0) & (propensity <= 1)).to_numpy()
    log_in.skip("propensity_outside_0_1", bad_propensity.sum())
    unknown_item = ~bad_time & ~bad_propensity & ~log["item_id"].isin(known_items).to_numpy()
    log_in.skip("item_not_in_item_context", unknown_item.sum())
    keep = ~(bad_time | bad_propensity | unknown_item)
    rows = log[keep]
    request = [f"obd-{policy}-{campaign}-{index}" for index in rows.index]
    impressions_frame = pl.DataFrame(
        {
            "event_id": [f"{r}-imp" for r in request],
            "ts": ts[keep].to_numpy(),
            "request_id": request,
            "user_id": user_segment_id(rows, campaign).tolist(),
            "item_id": [f"obd-{campaign}-{i}" for i in rows["item_id"]],
            "domain": str(DOMAIN),
            "position": rows["position"].astype("int64").to_numpy(),
            "policy": policy_name(policy),
            "model_version": f"obd-{campaign}",
            "propensity": propensity[keep].astype("float64").to_numpy(),
        },
        schema_overrides={"ts": pl.Int64, "position": pl.Int64},
    )
    landed = land(landing_root, Source.IMPRESSIONS, impressions_frame, part, summary)
    account(log_in, landed, considered=len(rows))
    summary.notes["user_segments"] = int(impressions_frame["user_id"].n_unique())

    clicks_in = summary.input(f"{policy}/{campaign}/{campaign}.csv click == 1")
    clicks_in.read = int((log["click"] == 1).sum())
    written = impressions_frame.filter(pl.Series(landed.valid))
    clicked = written.filter(pl.Series(rows["click"].to_numpy()[landed.valid] == 1))
    clicks_in.skip("impression_not_written", clicks_in.read - clicked.height)
    clicks_frame = clicked.select(
        (pl.col("request_id") + "-click").alias("event_id"),
        (pl.col("ts") + CLICK_DELAY_MS).alias("ts"),
        "request_id",
        "item_id",
        "user_id",
    )
    account(
        clicks_in,
        land(landing_root, Source.CLICKS, clicks_frame, part, summary),
        considered=clicked.height,
    )
    summary.notes["catalog_ts"] = datetime.fromtimestamp(catalog_ts / 1000, tz=UTC).isoformat()
    summary.notes["propensity"] = "logged propensity_score (position-wise marginal, see docs)"
    summary.seconds = timer() - began
    return summary
