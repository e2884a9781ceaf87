"""The JSON Schema of the sweep file, generated from the models (never written by hand)."""

from __future__ import annotations

from typing import Any

from spx.platform.lineage import RESOLVED
from spx.platform.spec import SweepSpec
from spx.workers.config import TrialConfig, known_keys


def sweep_schema() -> dict[str, Any]:
    """SweepSpec's schema, with ``fixed`` keys limited to trial keys (a ``parameters`` name
    may also be a key prefix or a variant, whose mapping values set several keys)."""
    schema = SweepSpec.model_json_schema()
    # spx sets the resolved init.* keys itself; init.from takes a mapping or a folder.
    keys = {"enum": [k for k in known_keys() if k not in RESOLVED] + ["init.from"]}
    props = schema["properties"]
    props["fixed"]["propertyNames"] = keys
    schema["$defs"]["TrialConfig"] = TrialConfig.model_json_schema()
    schema["title"] = "spx sweep file"
    return schema
