"""spx: sweeps of sparse-training experiments on Ray, recorded in SQL and MLflow.

The subsystem rooms (platform/, workers/, search/, kernels/, dashboards/) sit at the
repository root and install as ``spx.platform`` and so on. When spx runs from a checkout
(an editable install, or tests run from the repository root) this package adds the
repository root to its own ``__path__`` so the rooms resolve as subpackages of ``spx``,
never as top-level modules: ``platform/`` must not shadow the standard library.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

_root = Path(__file__).resolve().parent.parent
if (_root / "platform" / "spec.py").is_file() and str(_root) not in __path__:
    __path__.append(str(_root))

# The read-side API, imported on first use so `import spx` stays cheap (no pandas, scipy,
# torch or ray until asked for).
_LAZY = {
    "Sweep": "spx.dashboards.frames",
    "fit_scaling_law": "spx.dashboards.scaling",
    "pareto_front": "spx.dashboards.pareto",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spx' has no attribute {name!r}")
