"""Make the dry run see what the GPU machine has: the orchestration packages are absent.

``benchmarks/gpu/run.sh --dry-run`` puts this folder on PYTHONPATH, so every step of the
dry run fails, as it would on the GPU machine, if the kernels or the worker code they call
import one of these packages.
"""

import importlib.abc
import sys

ABSENT = ("ray", "mlflow", "optuna", "deepspeed", "sqlalchemy", "alembic", "psycopg", "typer")


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r} (absent on the GPU machine)")
        return None


sys.meta_path.insert(0, _Absent())
