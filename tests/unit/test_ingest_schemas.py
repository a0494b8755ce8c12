"""Spark schemas are derived from the contract, never redeclared."""

from __future__ import annotations

import pytest

pytest.importorskip("pyspark")

from ingest.config import IngestParams
from ingest.curate import curated_arrow_schema
from ingest.schemas import curated_schema, has_domain
from muma.contract import SCHEMAS, Source, field_names


@pytest.mark.parametrize("source", list(Source))
def test_curated_schema_follows_the_contract(source: Source):
    schema = curated_schema(source)
    assert schema.names == field_names(source)
    for column, field in zip(schema.fields, SCHEMAS[source], strict=True):
        assert column.nullable is not field.required
    # The files the Arrow tasks write have the same columns, nullability and (as Spark
    # reads them) types.
    from pyspark.sql.pandas.types import from_arrow_schema

    written = from_arrow_schema(curated_arrow_schema(source))
    assert [(f.name, f.dataType, f.nullable) for f in written.fields] == [
        (f.name, f.dataType, f.nullable) for f in schema.fields
    ]


def test_domain_partitioning_only_where_a_domain_exists():
    assert has_domain(Source.IMPRESSIONS) and has_domain(Source.ITEMS)
    assert not has_domain(Source.CLICKS)


def test_params_forbid_unknown_keys():
    with pytest.raises(ValueError):
        IngestParams(allowed_lateness_minute=5)
