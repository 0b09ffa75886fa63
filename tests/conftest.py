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


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where CUDA is absent: the only tests ever skipped."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker 'cuda'); none is available")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
# Nothing is skipped on a CPU machine except tests marked ``cuda``: a skip there (a
# missing optional package such as foolbox, a missing dataset) is turned into a failure,
# so `make test` cannot pass by silently running less. On a CUDA machine skips stay skips.
def _skip_is_failure(marked_cuda: bool) -> bool:
    return not torch.cuda.is_available() and not marked_cuda


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail") and \
            _skip_is_failure(item.get_closest_marker("cuda") is not None):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"{item.nodeid} was skipped on a machine without CUDA ({reason}); "
                        "only tests marked cuda may skip here")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and _skip_is_failure(False):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"{collector.nodeid} was skipped at collection ({reason})"
