"""Real-data importers: every written line passes the contract and every input row is counted.

Reads the real public logs from ``../shared/data`` (never copied into the repository) on small
subsets; skipped when that folder is absent.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.io import loadmat
from typer.testing import CliRunner

from ingest.importers import import_ciao, import_mind, import_obd
from ingest.importers.ciao import CATEGORY_DOMAINS, read_catalog
from ingest.importers.common import ImportSummary, land
from muma.contract import Source, check_line

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MIND = SHARED_DATA / "mind_small_subset"
CIAO = SHARED_DATA / "ciao_social"
OBD = SHARED_DATA / "open_bandit_dataset_sample"

MIND_LIMIT = 400
CIAO_LIMIT = 4_000
OBD_LIMIT = 2_000


def _needs(folder: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not folder.is_dir(), reason=f"real data folder {folder} absent (see ../shared/data)"
    )


def landed_records(landing_root: Path, source: Source) -> list[dict]:
    """Every line under ``v1/<source>/``, each checked against the contract."""
    records = []
    for path in sorted((landing_root / "v1" / str(source)).rglob("*.jsonl.gz")):
        with gzip.open(path, "rb") as handle:
            for line in handle:
                record, violation = check_line(source, line)
                assert violation is None, f"{path}: {violation}"
                records.append(record)
    return records


def assert_reconciles(summary: ImportSummary) -> None:
    for name, count in summary.inputs.items():
        assert count.read == count.converted + count.skipped_total, name
    assert summary.reconciles()


def assert_partitioned_by_hour(landing_root: Path, source: Source) -> None:
    for path in (landing_root / "v1" / str(source)).rglob("*.jsonl.gz"):
        date, hour = path.parent.parent.name, path.parent.name
        with gzip.open(path, "rb") as handle:
            for line in handle:
                ts = json.loads(line)["ts"]
                assert f"date={ts[:10]}" == date and f"hour={ts[11:13]}" == hour


# --------------------------------------------------------------------------- shared writer


def test_land_never_writes_a_line_that_breaks_the_contract(tmp_path):
    frame = pl.DataFrame(
        {
            "event_id": ["a", "b", "c"],
            "ts": [1_574_553_600_000, 1_574_553_600_000, 1_574_557_200_000],
            "request_id": ["r1", "r2", "r3"],
            "user_id": ["u", "u", "u"],
            "item_id": ["i", "i", "i"],
            "domain": ["ad", "ad", "podcast"],
            "position": [1, 2, 1],
            "policy": ["p", "p", "p"],
            "model_version": ["m", "m", "m"],
            "propensity": [0.5, 0.0, 0.5],
        }
    )
    landed = land(tmp_path, Source.IMPRESSIONS, frame, part="test")
    assert landed.valid.tolist() == [True, False, False]
    assert landed.skipped == {
        "contract:propensity_out_of_range:propensity": 1,
        "contract:unknown_domain:domain": 1,
    }
    assert [r["event_id"] for r in landed_records(tmp_path, Source.IMPRESSIONS)] == ["a"]


# --------------------------------------------------------------------------- MIND


@pytest.fixture(scope="module")
def mind_behaviors() -> pd.DataFrame:
    return pd.read_csv(
        MIND / "behaviors.tsv", sep="\t", header=None, quoting=3, dtype=str, nrows=MIND_LIMIT
    )


@pytest.fixture(scope="module")
def mind_import(tmp_path_factory) -> tuple[Path, ImportSummary]:
    landing = tmp_path_factory.mktemp("mind") / "landing"
    return landing, import_mind(MIND, landing, limit=MIND_LIMIT)


@_needs(MIND)
def test_mind_lines_pass_the_contract_and_counts_reconcile(mind_import, mind_behaviors):
    landing, summary = mind_import
    assert_reconciles(summary)
    tokens = mind_behaviors[4].str.split(" ").explode()
    assert summary.inputs["behaviors.tsv impressed news"].read == len(tokens)
    assert summary.inputs["news.tsv rows"].read == 2_000
    for source in (Source.ITEMS, Source.IMPRESSIONS, Source.CLICKS):
        assert len(landed_records(landing, source)) == summary.records_written[source]
    assert_partitioned_by_hour(landing, Source.IMPRESSIONS)


@_needs(MIND)
def test_mind_clicks_match_label_1_with_a_written_impression(mind_import, mind_behaviors):
    landing, summary = mind_import
    entries = mind_behaviors[4].str.split(" ")
    positions = entries.map(lambda tokens: list(range(1, len(tokens) + 1))).explode()
    labels = entries.explode().str.endswith("-1")
    clicks = landed_records(landing, Source.CLICKS)
    assert summary.inputs["behaviors.tsv clicked news (label 1)"].read == labels.sum()
    assert len(clicks) == (labels & (positions.to_numpy() <= 100)).sum()
    impressions = {
        r["request_id"] + r["item_id"]: r for r in landed_records(landing, Source.IMPRESSIONS)
    }
    assert all(c["request_id"] + c["item_id"] in impressions for c in clicks)


@_needs(MIND)
def test_mind_positions_propensity_placeholder_and_histories(mind_import, mind_behaviors):
    landing, summary = mind_import
    first = mind_behaviors.iloc[0]
    tokens = first[4].split(" ")
    rows = [
        r
        for r in landed_records(landing, Source.IMPRESSIONS)
        if r["request_id"] == f"mind-req-{first[0]}"
    ]
    assert sorted(r["position"] for r in rows) == list(range(1, min(len(tokens), 100) + 1))
    by_position = {r["position"]: r for r in rows}
    assert by_position[1]["item_id"] == "mind-" + tokens[0].rsplit("-", 1)[0]
    assert all(r["propensity"] == pytest.approx(1 / len(tokens)) for r in rows)
    assert {r["policy"] for r in rows} == {"mind_unknown_policy"}
    histories = pl.read_parquet(summary.side_outputs["histories"])
    assert histories.height == MIND_LIMIT
    assert histories["history"][0].to_list()[0] == "mind-" + first[3].split(" ")[0]


@_needs(MIND)
def test_mind_known_items_only_keeps_impressions_joinable_to_items(tmp_path):
    summary = import_mind(MIND, tmp_path / "landing", limit=MIND_LIMIT, known_items_only=True)
    assert_reconciles(summary)
    items = {r["item_id"]: r for r in landed_records(tmp_path / "landing", Source.ITEMS)}
    impressions = landed_records(tmp_path / "landing", Source.IMPRESSIONS)
    assert impressions and all(r["item_id"] in items for r in impressions)
    assert all(r["domain"] == items[r["item_id"]]["domain"] for r in impressions)
    skipped = summary.inputs["behaviors.tsv impressed news"].skipped
    assert skipped["item_not_in_news_tsv"] == summary.notes["impressed_news_not_in_news_tsv"]
    assert {r["domain"] for r in items.values()} == {"news", "video"}


# --------------------------------------------------------------------------- Ciao


@pytest.fixture(scope="module")
def ciao_import(tmp_path_factory) -> tuple[Path, ImportSummary]:
    landing = tmp_path_factory.mktemp("ciao") / "landing"
    return landing, import_ciao(CIAO, landing, limit=CIAO_LIMIT)


@_needs(CIAO)
def test_ciao_category_mapping_covers_the_catalog():
    catalog = read_catalog(CIAO / "catalog_ciao.txt")
    assert len(catalog) == 28
    assert set(catalog.values()) == set(CATEGORY_DOMAINS)


@_needs(CIAO)
def test_ciao_lines_pass_the_contract_and_counts_match_the_mat_files(ciao_import):
    landing, summary = ciao_import
    assert_reconciles(summary)
    ratings = loadmat(CIAO / "rating_with_timestamp.mat")["rating"][:CIAO_LIMIT]
    trust = loadmat(CIAO / "trust.mat")["trust"][:CIAO_LIMIT]
    valid_rating = (ratings[:, 3] >= 1) & (ratings[:, 3] <= 5)
    impressions = landed_records(landing, Source.IMPRESSIONS)
    clicks = landed_records(landing, Source.CLICKS)
    edges = landed_records(landing, Source.SOCIAL_EDGES)
    assert len(impressions) == valid_rating.sum()
    assert len(clicks) == (ratings[:, 3] >= 4).sum()
    assert len(edges) == len(trust)
    assert {(e["user_id"], e["friend_id"]) for e in edges} == {
        (f"ciao-u{a}", f"ciao-u{b}") for a, b in trust
    }
    assert {e["relation"] for e in edges} == {"follow"}
    items = {r["item_id"]: r for r in landed_records(landing, Source.ITEMS)}
    assert len(items) == len(np.unique(ratings[valid_rating, 1]))
    assert all(r["item_id"] in items for r in impressions)
    assert all(r["domain"] == items[r["item_id"]]["domain"] for r in impressions)
    assert all(items[r["item_id"]]["publish_ts"] <= r["ts"] for r in impressions)
    assert_partitioned_by_hour(landing, Source.CLICKS)


# --------------------------------------------------------------------------- Open Bandit


@pytest.fixture(scope="module")
def obd_imports(tmp_path_factory) -> tuple[Path, dict[str, ImportSummary]]:
    landing = tmp_path_factory.mktemp("obd") / "landing"
    summaries = {
        policy: import_obd(OBD, landing, policy=policy, campaign="all", limit=OBD_LIMIT)
        for policy in ("random", "bts")
    }
    return landing, summaries


@_needs(OBD)
def test_obd_lines_pass_the_contract_and_keep_the_logged_propensity(obd_imports):
    landing, summaries = obd_imports
    impressions = {r["event_id"]: r for r in landed_records(landing, Source.IMPRESSIONS)}
    items = {r["item_id"] for r in landed_records(landing, Source.ITEMS)}
    assert len(items) == 80
    for policy, summary in summaries.items():
        assert_reconciles(summary)
        log = pd.read_csv(OBD / policy / "all" / "all.csv", index_col=0, nrows=OBD_LIMIT)
        assert summary.records_written["impressions"] == len(log)
        assert summary.records_written["clicks"] == log["click"].sum()
        for index, row in log.sample(200, random_state=0).iterrows():
            record = impressions[f"obd-{policy}-all-{index}-imp"]
            assert record["propensity"] == row["propensity_score"]
            assert record["position"] == row["position"]
            assert record["item_id"] == f"obd-all-{row['item_id']}"
            assert record["policy"] == f"obd_{policy}"
            assert record["ts"][:19] == row["timestamp"][:19].replace(" ", "T")
    assert all(r["item_id"] in items for r in impressions.values())
    assert {r["position"] for r in impressions.values()} == {1, 2, 3}
    assert len(landed_records(landing, Source.CLICKS)) == sum(
        s.records_written["clicks"] for s in summaries.values()
    )


@_needs(OBD)
def test_obd_rows_outside_the_contract_are_counted_not_written(tmp_path):
    folder = tmp_path / "obd" / "random" / "men"
    folder.mkdir(parents=True)
    log = pd.read_csv(OBD / "random" / "men" / "men.csv", index_col=0, nrows=20)
    log.loc[log.index[0], "propensity_score"] = 0.0
    log.loc[log.index[1], "propensity_score"] = 1.5
    log.loc[log.index[2], "position"] = 0
    log.to_csv(folder / "men.csv")
    (folder / "item_context.csv").write_bytes(
        (OBD / "random" / "men" / "item_context.csv").read_bytes()
    )
    summary = import_obd(tmp_path / "obd", tmp_path / "landing", policy="random", campaign="men")
    assert_reconciles(summary)
    assert summary.inputs["random/men/men.csv rows"].skipped == {
        "propensity_outside_0_1": 2,
        "contract:out_of_range:position": 1,
    }
    assert len(landed_records(tmp_path / "landing", Source.IMPRESSIONS)) == 17


@_needs(OBD)
def test_cli_import_obd_writes_and_reports(tmp_path):
    from muma.cli import app

    result = CliRunner().invoke(
        app,
        [
            "import",
            "obd",
            str(OBD),
            "--policy",
            "bts",
            "--campaign",
            "women",
            "--limit",
            "300",
            "--out",
            str(tmp_path / "landing"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["reconciles"] is True
    assert summary["records_written"]["impressions"] == 300
    assert len(landed_records(tmp_path / "landing", Source.IMPRESSIONS)) == 300
    assert "landing zone written" in result.output
