"""Renders docs/data-contract.md from :mod:`muma.contract`, so the document cannot drift.

``python -m muma.contract_doc > docs/data-contract.md`` regenerates it; a test checks it.
"""

from __future__ import annotations

from .contract import CONTRACT_VERSION, MAX_DWELL_MS, SCHEMAS, Reason, Source

_REASONS = {
    Reason.MALFORMED_JSON: "the line is not a JSON object",
    Reason.MISSING_KEY: "a required key is absent or null",
    Reason.WRONG_TYPE: "a value has the wrong JSON type (a timestamp without offset included)",
    Reason.UNKNOWN_DOMAIN: "domain is not news, video or ad",
    Reason.INVALID_VALUE: "an enumerated value (relation, action, region) is not allowed",
    Reason.NEGATIVE_DWELL: "dwell_ms below 0",
    Reason.ABSURD_DWELL: f"dwell_ms above {MAX_DWELL_MS:,} ms (six hours)",
    Reason.PROPENSITY_OUT_OF_RANGE: "propensity not in (0, 1]",
    Reason.OUT_OF_RANGE: "another number outside its declared range",
    Reason.LATE_EVENT: "event time earlier than the partition start minus the allowed lateness",
    Reason.FUTURE_EVENT: "event time after the partition end plus the clock-skew allowance",
    Reason.CLICK_WITHOUT_IMPRESSION: "a click whose impression is not found within the "
    "attribution window (ingest)",
    Reason.DUPLICATE_EVENT_ID: "an event id seen before (ingest drops and counts it)",
}

_HEADER = f"""# Landing-zone data contract, version {CONTRACT_VERSION}

Generated from `muma/contract.py` by `python -m muma.contract_doc`; do not edit by hand.
The simulator, the real-data importers, ingest and the tests all use that one declaration.

## Format

Every source arrives as gzip-compressed JSON Lines, one object per line, written the way a
log shipper writes it, partitioned by source, date and hour of arrival (UTC):

```
<data_root>/landing/v{CONTRACT_VERSION}/<source>/date=YYYY-MM-DD/hour=HH/<file>.jsonl.gz
```

- Timestamps are ISO-8601 strings with an explicit UTC offset (`2026-11-01T05:00:00.123Z`,
  `2026-11-01T13:00:00.123+08:00`); ingest normalises them to UTC. A timestamp without an
  offset is a `wrong_type`.
- Ids are non-empty strings. `event_id` is unique per event and is the deduplication key.
- Optional keys may be absent; required keys must be present and non-null.
- Numbers are JSON numbers; integers must be integral (`true` is not a number).
- The version is part of the path; a breaking change adds `v2` beside `v1`.
- Propensity is exact: the probability with which the logging policy put the item in its
  slot given the slots above it (Plackett-Luce); the product over a slate's slots is the
  slate's probability.
"""


def render() -> str:
    """The whole document."""
    parts = [_HEADER, "## Sources\n"]
    for source in Source:
        parts.append(f"### `{source.value}`\n")
        parts.append("| key | type | required | allowed / range | meaning |")
        parts.append("|---|---|---|---|---|")
        for field in SCHEMAS[source]:
            if field.allowed:
                bounds = ", ".join(field.allowed)
            elif field.minimum is not None or field.maximum is not None:
                low = "(" if field.exclusive_minimum else "["
                lo = "" if field.minimum is None else f"{field.minimum:g}"
                hi = "" if field.maximum is None else f"{field.maximum:g}"
                bounds = f"{low}{lo}, {hi}]"
            else:
                bounds = ""
            required = "yes" if field.required else "no"
            parts.append(f"| `{field.name}` | {field.type} | {required} | {bounds} | {field.doc} |")
        parts.append("")
    parts.append("## Quarantine reason codes\n")
    parts.append("| code | when |")
    parts.append("|---|---|")
    parts += [f"| `{reason.value}` | {_REASONS[reason]} |" for reason in Reason]
    parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
