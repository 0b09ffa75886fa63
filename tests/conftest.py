"""Shared fixtures: an isolated checkpoint cache and small in-memory data."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty checkpoint cache and data root."""
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MCUTILS_DATA", str(tmp_path / "data"))
    torch.manual_seed(0)
    yield
