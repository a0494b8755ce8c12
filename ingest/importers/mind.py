"""MIND (Microsoft News, Wu et al. ACL 2020) into the landing contract.

``news.tsv`` rows become ``items``; every impressed article of a ``behaviors.tsv`` row becomes
an ``impressions`` record and, when its label is 1, a ``clicks`` record. Click histories have
no dwell or time, so they are not views: they go to a side table
``<landing_root>/../imports/mind/histories.parquet``. The mapping, field by field, and what
MIND cannot carry are in ``docs/importers.md``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import polars as pl

from muma.contract import Domain, Source

from .common import CLICK_DELAY_MS, ImportSummary, account, land, timer

POLICY = "mind_unknown_policy"
"""MIND does not say which policy built the impression lists."""
MODEL_VERSION = "mind-unknown"
CREATOR_ID = "mind-unknown"
"""MIND has no author or publisher field; training must not read creator_id for MIND items."""
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
"""MIND impression times, e.g. ``11/15/2019 8:55:22 AM``; no zone is given, read as UTC."""

NEWS_COLUMNS = [
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
]
BEHAVIOR_COLUMNS = ["impression_id", "user", "time", "history", "impressions"]


def _read_tsv(path: Path, names: list[str], limit: int | None) -> pd.DataFrame:
    # QUOTE_NONE: titles hold bare quotes; only empty fields are missing ("NA" is a word).
    return pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=names,
        quoting=csv.QUOTE_NONE,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        nrows=limit,
    )


def _domain(category: pl.Expr) -> pl.Expr:
    """MIND's ``video`` category is the video domain; every other category is news."""
    return (
        pl.when(category == "video")
        .then(pl.lit(str(Domain.VIDEO)))
        .otherwise(pl.lit(str(Domain.NEWS)))
    )


def import_mind(
    source_path: Path,
    landing_root: Path,
    limit: int | None = None,
    known_items_only: bool = False,
    side_root: Path | None = None,
) -> ImportSummary:
    """Import a MIND folder (``behaviors.tsv``, ``news.tsv``) into the landing zone.

    Args:
        source_path: Folder holding ``behaviors.tsv`` and ``news.tsv``.
        landing_root: Landing root to write ``v1/<source>/date=/hour=`` partitions under.
        limit: Read only the first ``limit`` rows of ``behaviors.tsv`` (``news.tsv`` is always
            read whole, so that items exist for every impressed article it describes).
        known_items_only: Skip impressions of articles that ``news.tsv`` does not describe
            (reason ``item_not_in_news_tsv``) instead of writing them with domain ``news``.
        side_root: Where the side tables go (default ``<landing_root>/../imports/mind``).

    Returns:
        Counts per input unit and landing source; ``summary.reconciles()`` holds.
    """
    began = timer()
    source_path, landing_root = Path(source_path), Path(landing_root)
    side_root = Path(side_root) if side_root else landing_root.parent / "imports" / "mind"
    summary = ImportSummary("mind", landing_root, part="mind-00000")

    news = pl.from_pandas(_read_tsv(source_path / "news.tsv", NEWS_COLUMNS, None))
    behaviors = pl.from_pandas(
        _read_tsv(source_path / "behaviors.tsv", BEHAVIOR_COLUMNS, limit)
    ).with_columns(
        pl.col("time")
        .str.strptime(pl.Datetime("ms", "UTC"), TIME_FORMAT, strict=False)
        .dt.epoch("ms")
        .alias("ts")
    )

    # One row per impressed article; position is its 1-based index in the logged list.
    entries = (
        behaviors.select(
            "impression_id",
            "user",
            "ts",
            pl.col("impressions").str.strip_chars().str.split(" ").alias("token"),
        )
        .with_columns(
            pl.col("token").list.len().alias("list_len"),
            pl.col("token").list.eval(pl.int_range(1, pl.len() + 1)).alias("position"),
        )
        .explode("token", "position")
        .filter(pl.col("token").is_not_null())
        .with_columns(
            pl.col("token").str.extract(r"^(N\d+)-[01]$", 1).alias("news_id"),
            pl.col("token").str.extract(r"^N\d+-([01])$", 1).cast(pl.Int8).alias("label"),
        )
    )
    histories = behaviors.select(
        "impression_id",
        "user",
        "ts",
        pl.col("history")
        .fill_null("")
        .str.split(" ")
        .list.eval(pl.element().filter(pl.element() != "")),
    )

    # MIND has no publication time. An article existed no later than the first impression
    # that showed it or had it in the click history: that time stands in for publish_ts.
    seen = pl.concat(
        [
            entries.select("news_id", "ts"),
            histories.explode("history").select(pl.col("history").alias("news_id"), "ts"),
        ]
    ).drop_nulls()
    first_seen = seen.group_by("news_id").agg(pl.col("ts").min().alias("first_seen"))
    fallback_ts = behaviors["ts"].min()

    # items
    items_in = summary.input("news.tsv rows")
    items_in.read = news.height
    items = news.join(first_seen, on="news_id", how="left")
    summary.notes["items_publish_ts_from_first_seen"] = int(items["first_seen"].is_not_null().sum())
    summary.notes["items_publish_ts_fallback_earliest_impression"] = int(
        items["first_seen"].is_null().sum()
    )
    items_frame = items.select(
        pl.concat_str([pl.lit("mind-item-"), pl.col("news_id")]).alias("event_id"),
        pl.col("first_seen").fill_null(fallback_ts).cast(pl.Int64).alias("ts"),
        pl.concat_str([pl.lit("mind-"), pl.col("news_id")]).alias("item_id"),
        _domain(pl.col("category")).alias("domain"),
        pl.col("category"),
        pl.lit(CREATOR_ID).alias("creator_id"),
        pl.col("title"),
        pl.col("abstract").alias("text"),
        pl.col("first_seen").fill_null(fallback_ts).cast(pl.Int64).alias("publish_ts"),
    )
    landed_items = land(landing_root, Source.ITEMS, items_frame, summary.part, summary)
    account(items_in, landed_items)
    known = items.filter(pl.Series(landed_items.valid)).select(
        "news_id", _domain(pl.col("category")).alias("item_domain")
    )

    # impressions
    impressions_in = summary.input("behaviors.tsv impressed news")
    impressions_in.read = entries.height
    clicks_in = summary.input("behaviors.tsv clicked news (label 1)")
    clicks_in.read = int((entries["label"] == 1).sum())
    entries = entries.join(known, on="news_id", how="left")
    summary.notes["impressed_news_not_in_news_tsv"] = int(
        entries.filter(pl.col("news_id").is_not_null())["item_domain"].is_null().sum()
    )
    bad_token = entries["news_id"].is_null()
    bad_time = ~bad_token & entries["ts"].is_null()
    unknown_item = ~bad_token & ~bad_time & entries["item_domain"].is_null()
    impressions_in.skip("malformed_impression_token", bad_token.sum())
    impressions_in.skip("unparseable_time", bad_time.sum())
    drop = bad_token | bad_time
    if known_items_only:
        impressions_in.skip("item_not_in_news_tsv", unknown_item.sum())
        drop = drop | unknown_item
    candidates = entries.filter(~drop)
    impressions_frame = candidates.select(
        pl.format("mind-imp-{}-{}", "impression_id", "position").alias("event_id"),
        pl.col("ts").cast(pl.Int64),
        pl.concat_str([pl.lit("mind-req-"), pl.col("impression_id")]).alias("request_id"),
        pl.concat_str([pl.lit("mind-"), pl.col("user")]).alias("user_id"),
        pl.concat_str([pl.lit("mind-"), pl.col("news_id")]).alias("item_id"),
        pl.col("item_domain").fill_null(str(Domain.NEWS)).alias("domain"),
        pl.col("position").cast(pl.Int64),
        pl.lit(POLICY).alias("policy"),
        pl.lit(MODEL_VERSION).alias("model_version"),
        # Placeholder, not a logged propensity: as if the list were drawn uniformly.
        (1.0 / pl.col("list_len")).alias("propensity"),
    )
    landed_impressions = land(
        landing_root, Source.IMPRESSIONS, impressions_frame, summary.part, summary
    )
    account(impressions_in, landed_impressions, considered=candidates.height)

    # clicks: label-1 articles whose impression was written
    written = impressions_frame.filter(pl.Series(landed_impressions.valid))
    clicked = written.filter(candidates.filter(pl.Series(landed_impressions.valid))["label"] == 1)
    clicks_frame = clicked.select(
        pl.col("event_id").str.replace("^mind-imp-", "mind-click-"),
        (pl.col("ts") + CLICK_DELAY_MS).alias("ts"),
        "request_id",
        "item_id",
        "user_id",
    )
    landed_clicks = land(landing_root, Source.CLICKS, clicks_frame, summary.part, summary)
    clicks_in.skip("impression_not_written", clicks_in.read - clicked.height)
    account(clicks_in, landed_clicks, considered=clicked.height)

    # side tables: click histories (no dwell, no time: not views) and article extras
    side_root.mkdir(parents=True, exist_ok=True)
    histories_in = summary.input("behaviors.tsv rows (click histories)")
    histories_in.read = histories.height
    histories_in.skip("unparseable_time", histories["ts"].null_count())
    history_table = histories.filter(pl.col("ts").is_not_null()).select(
        pl.concat_str([pl.lit("mind-req-"), pl.col("impression_id")]).alias("request_id"),
        pl.concat_str([pl.lit("mind-"), pl.col("user")]).alias("user_id"),
        pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC").alias("ts"),
        pl.col("history").list.eval(pl.lit("mind-") + pl.element()).alias("history"),
    )
    history_path = side_root / "histories.parquet"
    history_table.write_parquet(history_path)
    histories_in.converted = history_table.height
    summary.side_outputs["histories"] = history_path
    history_ids = histories.explode("history")["history"].drop_nulls()
    summary.notes["history_ids_in_news_tsv_share"] = (
        round(float(history_ids.is_in(news["news_id"].implode()).mean()), 4)
        if history_ids.len()
        else 0.0
    )
    news_path = side_root / "news_extra.parquet"
    news.select(
        pl.concat_str([pl.lit("mind-"), pl.col("news_id")]).alias("item_id"),
        "subcategory",
        "url",
        "title_entities",
        "abstract_entities",
    ).write_parquet(news_path)
    summary.side_outputs["news_extra"] = news_path

    summary.notes["propensity"] = "placeholder 1/len(impression list); MIND logs none"
    summary.notes["label_1_entries_with_position_over_100"] = int(
        ((entries["label"] == 1) & (entries["position"] > 100)).sum()
    )
    summary.seconds = timer() - began
    return summary
