"""The data-contract document is generated from the code and must not drift from it."""

from pathlib import Path

from muma.contract_doc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-contract.md"


def test_docs_data_contract_is_generated_from_the_code():
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/data-contract.md is stale: run `python -m muma.contract_doc > docs/data-contract.md`"
    )


def test_every_reason_code_is_documented():
    from muma.contract import Reason

    text = render()
    for reason in Reason:
        assert f"`{reason.value}`" in text
