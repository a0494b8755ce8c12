"""Ciao (Tang, Gao, Liu 2012) into the landing contract.

Each rating of ``rating_with_timestamp.mat`` becomes an ``impressions`` record (the user was
shown the product) and, when the rating is 4 or 5, a ``clicks`` record. Each product becomes
one ``items`` record whose category is its Ciao category name; the 28 categories are mapped
to the contract's three domains by :data:`CATEGORY_DOMAINS`. Trust edges of ``trust.mat``
become ``social_edges`` with relation ``follow``. The mapping, field by field, and what
Ciao cannot carry are in ``docs/importers.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from muma.contract import Domain, EdgeAction, Relation, Source

from .common import (
    CLICK_DELAY_MS,
    ImportSummary,
    account,
    epoch_ms_from_seconds,
    land,
    timer,
)

POLICY = "ciao_organic"
"""Ratings are organic: the user found the product, no logged policy chose it."""
MODEL_VERSION = "ciao-none"
CREATOR_ID = "ciao-unknown"
"""Ciao has no maker or reviewer-of-record per product; training must not read creator_id."""
CLICK_MIN_RATING = 4
"""A rating of 4 or 5 stands for a positive response, written as a click."""
POSITION = 1
"""No slate exists: every rating is written as the only slot of its own request."""

CATEGORY_DOMAINS: dict[str, Domain] = {
    # Watched: film and TV on disc, and the entertainment category (cinema, TV).
    "DVDs": Domain.VIDEO,
    "Entertainment": Domain.VIDEO,
    # Read or used as content and services rather than bought as goods.
    "Books": Domain.NEWS,
    "Travel": Domain.NEWS,
    "Food & Drink": Domain.NEWS,
    "Health": Domain.NEWS,
    "Ciao Caf?": Domain.NEWS,
    "Internet": Domain.NEWS,
    "Education & Careers": Domain.NEWS,
    "Family": Domain.NEWS,
    "Finance": Domain.NEWS,
    # Goods a shop would advertise.
    "Beauty": Domain.AD,
    "Music": Domain.AD,
    "Sports & Outdoors": Domain.AD,
    "Shopping": Domain.AD,
    "Software": Domain.AD,
    "House & Garden": Domain.AD,
    "Cars": Domain.AD,
    "Household Appliances": Domain.AD,
    "Telecommunications": Domain.AD,
    "Electronics": Domain.AD,
    "Musical Instruments & Equipment": Domain.AD,
    "Computers": Domain.AD,
    "Cameras": Domain.AD,
    "Games": Domain.AD,
    "Fashion": Domain.AD,
    "Adult Products": Domain.AD,
    "Office Equipment": Domain.AD,
}
"""Ciao category name (as in ``catalog_ciao.txt``) to contract domain. A coarse, documented
choice: the contract has three domains and Ciao 28 categories; the category itself is kept
in ``items.category`` for anything finer (cross-category transfer)."""

RATING_COLUMNS = ["user", "product", "category", "rating", "helpfulness", "unix_time"]


def read_catalog(path: Path) -> dict[int, str]:
    """``catalog_ciao.txt``: one ``<id> <name>`` per line."""
    catalog: dict[int, str] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        number, _, name = line.strip().partition(" ")
        if number.isdigit():
            catalog[int(number)] = name.strip()
    return catalog


def _load_mat(path: Path, key: str, limit: int | None) -> np.ndarray:
    from scipy.io import loadmat

    matrix = np.asarray(loadmat(path)[key])
    return matrix if limit is None else matrix[:limit]


def import_ciao(
    source_path: Path,
    landing_root: Path,
    limit: int | None = None,
    category_domains: Mapping[str, Domain] | None = None,
) -> ImportSummary:
    """Import the Ciao folder (ratings, trust, catalog) into the landing zone.

    Args:
        source_path: Folder holding ``rating_with_timestamp.mat``, ``trust.mat`` and
            ``catalog_ciao.txt``.
        landing_root: Landing root to write ``v1/<source>/date=/hour=`` partitions under.
        limit: Read only the first ``limit`` rows of the ratings and of the trust edges.
        category_domains: Category name to domain (default :data:`CATEGORY_DOMAINS`).

    Returns:
        Counts per input unit and landing source; ``summary.reconciles()`` holds.
    """
    began = timer()
    source_path, landing_root = Path(source_path), Path(landing_root)
    domains = dict(category_domains or CATEGORY_DOMAINS)
    summary = ImportSummary("ciao", landing_root, part="ciao-00000")
    catalog = read_catalog(source_path / "catalog_ciao.txt")
    ratings = pl.DataFrame(
        _load_mat(source_path / "rating_with_timestamp.mat", "rating", limit).astype(np.int64),
        schema=RATING_COLUMNS,
        orient="row",
    ).with_row_index("row")
    trust = pl.DataFrame(
        _load_mat(source_path / "trust.mat", "trust", limit).astype(np.int64),
        schema=["truster", "trustee"],
        orient="row",
    ).with_row_index("row")

    ratings_in = summary.input("rating_with_timestamp.mat rows")
    ratings_in.read = ratings.height
    ratings = ratings.with_columns(
        pl.Series("ts", epoch_ms_from_seconds(ratings["unix_time"].to_numpy())),
        pl.col("category")
        .replace_strict(catalog, default=None, return_dtype=pl.Utf8)
        .alias("category_name"),
    ).with_columns(
        pl.col("category_name")
        .replace_strict({name: str(domain) for name, domain in domains.items()}, default=None)
        .alias("domain")
    )
    bad_rating = ~ratings["rating"].is_between(1, 5)
    bad_time = ratings["unix_time"] <= 0
    bad_category = ratings["domain"].is_null()
    ratings_in.skip("rating_outside_1_5", bad_rating.sum())
    ratings_in.skip("time_not_positive", (~bad_rating & bad_time).sum())
    ratings_in.skip("category_not_in_catalog", (~bad_rating & ~bad_time & bad_category).sum())
    usable = ratings.filter(~(bad_rating | bad_time | bad_category))

    # items: one per product, described by its first rating (time, then row order)
    first = usable.sort("ts", "row").group_by("product", maintain_order=True).first()
    summary.notes["products_with_several_categories"] = int(
        (usable.group_by("product").agg(pl.col("category").n_unique())["category"] > 1).sum()
    )
    items_frame = first.select(
        pl.format("ciao-item-p{}", "product").alias("event_id"),
        "ts",
        pl.format("ciao-p{}", "product").alias("item_id"),
        "domain",
        pl.col("category_name").alias("category"),
        pl.lit(CREATOR_ID).alias("creator_id"),
        pl.format("ciao product {}", "product").alias("title"),
        pl.col("ts").alias("publish_ts"),
    )
    landed_items = land(landing_root, Source.ITEMS, items_frame, summary.part, summary)
    summary.notes["items_not_written"] = dict(landed_items.skipped)
    known = first.filter(pl.Series(landed_items.valid)).select(
        "product", pl.col("domain").alias("item_domain")
    )

    usable = usable.join(known, on="product", how="left")
    ratings_in.skip("item_not_written", usable["item_domain"].null_count())
    usable = usable.filter(pl.col("item_domain").is_not_null())
    n_products = max(known.height, 1)
    impressions_frame = usable.select(
        pl.format("ciao-imp-{}", "row").alias("event_id"),
        "ts",
        pl.format("ciao-req-{}", "row").alias("request_id"),
        pl.format("ciao-u{}", "user").alias("user_id"),
        pl.format("ciao-p{}", "product").alias("item_id"),
        pl.col("item_domain").alias("domain"),
        pl.lit(POSITION, dtype=pl.Int64).alias("position"),
        pl.lit(POLICY).alias("policy"),
        pl.lit(MODEL_VERSION).alias("model_version"),
        # Placeholder, not a logged propensity: uniform over the imported products.
        pl.lit(1.0 / n_products).alias("propensity"),
    )
    landed_impressions = land(
        landing_root, Source.IMPRESSIONS, impressions_frame, summary.part, summary
    )
    account(ratings_in, landed_impressions, considered=usable.height)

    clicks_in = summary.input("ratings >= 4")
    liked = ratings["rating"].is_between(CLICK_MIN_RATING, 5)
    clicks_in.read = int(liked.sum())
    written = usable.filter(pl.Series(landed_impressions.valid))
    clicked = written.filter(pl.col("rating") >= CLICK_MIN_RATING)
    clicks_in.skip("impression_not_written", clicks_in.read - clicked.height)
    clicks_frame = clicked.select(
        pl.format("ciao-click-{}", "row").alias("event_id"),
        (pl.col("ts") + CLICK_DELAY_MS).alias("ts"),
        pl.format("ciao-req-{}", "row").alias("request_id"),
        pl.format("ciao-p{}", "product").alias("item_id"),
        pl.format("ciao-u{}", "user").alias("user_id"),
    )
    account(
        clicks_in,
        land(landing_root, Source.CLICKS, clicks_frame, summary.part, summary),
        considered=clicked.height,
    )

    # social edges: trust has no time; use the truster's first rating time among the rows
    # read, else the last rating time read (the trust snapshot was crawled after it).
    trust_in = summary.input("trust.mat rows")
    trust_in.read = trust.height
    active = usable.group_by("user").agg(pl.col("ts").min().alias("first_rating"))
    last_rating = usable["ts"].max() if usable.height else None
    trust = trust.join(active, left_on="truster", right_on="user", how="left")
    summary.notes["trust_edges_ts_fallback_last_rating"] = int(trust["first_rating"].null_count())
    if last_rating is None:
        trust_in.skip("no_rating_time_for_edge", trust.height)
        trust = trust.clear()
    edges_frame = trust.select(
        pl.format("ciao-trust-{}", "row").alias("event_id"),
        pl.col("first_rating").fill_null(last_rating).cast(pl.Int64).alias("ts"),
        pl.format("ciao-u{}", "truster").alias("user_id"),
        pl.format("ciao-u{}", "trustee").alias("friend_id"),
        pl.lit(str(Relation.FOLLOW)).alias("relation"),
        pl.lit(str(EdgeAction.ADDED)).alias("action"),
    )
    account(
        trust_in,
        land(landing_root, Source.SOCIAL_EDGES, edges_frame, summary.part, summary),
        considered=edges_frame.height,
    )

    summary.notes["propensity"] = "placeholder 1/number of products imported; Ciao logs none"
    summary.seconds = timer() - began
    return summary
