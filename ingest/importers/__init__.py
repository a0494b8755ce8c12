"""Real-data importers: public datasets converted into the landing contract.

Each importer is a library function ``import_<name>(source_path, landing_root, ...)`` that
writes contract-valid gzip JSON Lines by hour partition and returns an
:class:`~ingest.importers.common.ImportSummary`. Field-by-field mappings and what each
dataset cannot carry are in ``docs/importers.md``.
"""

from .ciao import import_ciao
from .common import ImportSummary, InputCount
from .mind import import_mind
from .obd import import_obd

LOGGED_PROPENSITY_POLICIES = frozenset({"obd_random", "obd_bts"})
"""Imported policies whose ``propensity`` was logged by the real system."""
PLACEHOLDER_PROPENSITY_POLICIES = frozenset({"mind_unknown_policy", "ciao_organic"})
"""Imported policies whose ``propensity`` is a documented placeholder: never use it for IPS."""

__all__ = [
    "LOGGED_PROPENSITY_POLICIES",
    "PLACEHOLDER_PROPENSITY_POLICIES",
    "ImportSummary",
    "InputCount",
    "import_ciao",
    "import_mind",
    "import_obd",
]
