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


# ---------------------------------------------------------------- small trained models
@pytest.fixture(scope="module")
def toy_classifier():
    """A small trained MLP on 1x6x6 'images' of 3 classes (30 each): the detectors' and the
    detector-penalty attack's test model."""
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(3, 1, 6, 6, generator=g)
    y = torch.arange(3).repeat_interleave(30)
    x = (centers[y] + 0.15 * torch.randn(len(y), 1, 6, 6, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


@pytest.fixture(scope="module")
def digits_mlp():
    """An MLP trained in a few seconds on the 8x8 digits (with a Normalize layer)."""
    from mcutils import data, training
    from mcutils.core.runtime import seed_everything
    from mcutils.models import build_for_dataset

    seed_everything(0)
    train = data.load_dataset("digits", "train")
    test = data.load_dataset("digits", "test")
    net = build_for_dataset("mlp", "digits", hidden=32)
    training.train(net, data.TensorLoader(train, 64, shuffle=True), epochs=8, lr=0.01,
                   progress=False)
    return net.eval(), test

