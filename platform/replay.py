"""``spx sweep replay``: run a finished sweep's exact trial configs again, as a new sweep.

Every trial row keeps its full config (every key, defaults included) and the sweep row
keeps the spec it was launched with (its sampler seed included). A replay is a grid over
one variant axis, ``replay``, whose values are those configs in trial order, so trial *i*
of the replay runs trial *i*'s config, whatever method chose it (a parallel TPE run is not
deterministic, its configs are). Early termination is left out: every config runs to its
end. The replay's own spec records where it came from in ``description``.
"""

from __future__ import annotations

from typing import Any

import yaml

from spx.platform.spec import SweepSpec, parse_spec
from spx.platform.store import Store

DROPPED = ("trials", "parameters", "conditions", "constraints", "replicates", "early_stop")


def replay_spec(store: Store, name: str, new_name: str) -> tuple[SweepSpec, str]:
    """The spec (and its YAML text) of a sweep that re-runs sweep ``name``'s configs."""
    sweep = store.get_sweep(name)
    trials = sorted(store.trials(sweep.id), key=lambda t: t.number)
    data: dict[str, Any] = yaml.safe_load(sweep.spec_text) or {}
    for key in DROPPED:
        data.pop(key, None)
    configs = [dict(t.params) for t in trials]
    # init.from is one per sweep, under fixed; spx resolves the other init.* keys again.
    inits = [{k: c.pop(k) for k in list(c) if k.startswith("init.")} for c in configs]
    fixed = {k: v for k, v in (inits[0] if inits else {}).items() if k.startswith("init.from.")}
    data.update(
        name=new_name,
        method="grid",
        fixed={k: v for k, v in fixed.items() if v is not None},
        parameters={"replay": {"values": configs}},
        description=f"replay of sweep {name} (method {sweep.method}, seed "
        f"{data.get('seed', 0)}): trial i runs that sweep's trial i config",
    )
    text = yaml.safe_dump(data, sort_keys=False, width=10_000, allow_unicode=True)
    return parse_spec(text), text
