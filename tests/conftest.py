"""Shared fixtures: an isolated checkpoint cache and small in-memory data."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty checkpoint cache and data root."""
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MCUTILS_DATA", str(tmp_path / "data"))
    # fixed speed plans: tests must not spend time calibrating (tests of calibration
    # pass calibrate=True explicitly)
    monkeypatch.setenv("MCUTILS_CALIBRATE", "0")
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tests use tiny models, where thread start-up costs more than it saves."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
