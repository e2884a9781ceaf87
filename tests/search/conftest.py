"""Reuse the store tests' PostgreSQL fixtures (a fresh schema per test)."""

from __future__ import annotations

from helpers import load_test_module

_store_fixtures = load_test_module("platform/conftest.py", "spx_tests_platform_conftest")

postgres_base_url = _store_fixtures.postgres_base_url
postgres_url = _store_fixtures.postgres_url
