"""The bad-input tests run the console scripts in this process (`run_main`, tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_feature_cache(tmp_path_factory, monkeypatch) -> None:
    """levl-eval's default feature cache lives in ~/.cache: each test gets its own instead."""
    monkeypatch.setenv("LEVL_FEATURE_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
