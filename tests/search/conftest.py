"""Reuse the store tests' PostgreSQL fixtures (a fresh schema per test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parent.parent / "platform" / "conftest.py"
_spec = importlib.util.spec_from_file_location("spx_tests_platform_conftest", _path)
assert _spec is not None and _spec.loader is not None
_store_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_store_fixtures)

postgres_base_url = _store_fixtures.postgres_base_url
postgres_url = _store_fixtures.postgres_url
