import json
import multiprocessing as mp
import os
import warnings

import pytest
import torch
from torch import nn

from mcutils.core import store


def _build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def _trainer(calls):
    def train(model):
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    return train


def test_config_hash_is_stable_and_order_free():
    a = store.config_hash({"lr": 0.1, "model": "x", "nested": {"b": 1, "a": [1, 2]}})
    b = store.config_hash({"nested": {"a": [1, 2], "b": 1}, "model": "x", "lr": 0.1})
    assert a == b and len(a) == 16
    assert store.config_hash({"lr": 0.1}) != store.config_hash({"lr": 0.2})
    with pytest.raises(TypeError):
        store.config_hash({"x": object()})


def test_miss_then_hit(tmp_path):
    calls = []
    cfg = {"name": "toy", "lr": 0.1}
    m1, info1 = store.load_or_train(cfg, _build, _trainer(calls), return_info=True,
                                    evaluate=lambda m: {"acc": 0.5})
    assert calls == [1] and not info1["cached"] and info1["metrics"] == {"acc": 0.5}
    m2, info2 = store.load_or_train(cfg, _build, _trainer(calls), return_info=True)
    assert calls == [1] and info2["cached"]
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert not m2.training  # returned in eval mode
    pt, meta = store.checkpoint_paths(cfg)
    assert pt.exists() and json.loads(meta.read_text())["config"]["lr"] == 0.1
    assert str(pt).startswith(os.environ["MCUTILS_CACHE"])


def test_train_may_return_a_module():
    def train(model):
        new = _build()
        with torch.no_grad():
            new[0].weight.fill_(3.0)
        return new
    m = store.load_or_train({"k": 1}, _build, train)
    assert torch.all(m[0].weight == 3.0)
    m2 = store.load_or_train({"k": 1}, _build, lambda m: pytest.fail("retrained"))
    assert torch.all(m2[0].weight == 3.0)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete_json"])
def test_corrupted_checkpoint_is_removed_and_retrained(damage):
    calls = []
    cfg = {"name": "toy", "damage": damage}
    store.load_or_train(cfg, _build, _trainer(calls))
    pt, meta = store.checkpoint_paths(cfg)
    if damage == "truncate":
        pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    elif damage == "garbage":
        pt.write_bytes(b"not a checkpoint")
    else:
        meta.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = store.load_or_train(cfg, _build, _trainer(calls))
    assert calls == [1, 1]
    assert any("retraining" in str(w.message) for w in caught)
    assert isinstance(m, nn.Module) and pt.exists() and meta.exists()
    store.load_or_train(cfg, _build, _trainer(calls))
    assert calls == [1, 1]


def test_mismatched_architecture_is_retrained():
    calls = []
    cfg = {"name": "toy"}
    store.load_or_train(cfg, _build, _trainer(calls))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = store.load_or_train(cfg, lambda: nn.Linear(3, 2), _trainer(calls))
    assert calls == [1, 1] and isinstance(m, nn.Linear)


def test_atomic_write_leaves_no_temp_files_on_failure(tmp_path):
    def boom(model):
        raise RuntimeError("training crashed")
    with pytest.raises(RuntimeError):
        store.load_or_train({"name": "crash"}, _build, boom)
    pt, meta = store.checkpoint_paths({"name": "crash"})
    assert not pt.exists() and not meta.exists()
    assert not [p for p in pt.parent.glob("*.tmp")]


def _worker(cache, counter_path, q):
    os.environ["MCUTILS_CACHE"] = cache

    def train(model):
        with open(counter_path, "a") as f:
            f.write("x")
        import time
        time.sleep(0.5)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(2.0)
    m = store.load_or_train({"name": "shared"}, _build, train)
    q.put(float(m[0].weight.sum()))


def test_concurrent_writers_train_once_and_agree(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    counter = tmp_path / "count.txt"
    procs = [ctx.Process(target=_worker, args=(os.environ["MCUTILS_CACHE"], str(counter), q))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [q.get(timeout=5) for _ in procs]
    assert all(p.exitcode == 0 for p in procs)
    assert counter.read_text() == "x"  # the lock made the others wait and load
    assert len(set(results)) == 1
    pt, _ = store.checkpoint_paths({"name": "shared"})
    torch.load(pt, weights_only=True)


def test_code_version_joins_the_key():
    """Changed training code retrains instead of serving the old model."""
    def train_v1(model):
        with torch.no_grad():
            model[0].weight.fill_(1.0)

    def train_v2(model):
        with torch.no_grad():
            model[0].weight.fill_(2.0)

    v1, v2 = store.code_version(train_v1), store.code_version(train_v2)
    assert v1 != v2 and v1 == store.code_version(train_v1)
    m1 = store.load_or_train({"k": 1}, _build, train_v1, code=v1)
    m2, info = store.load_or_train({"k": 1}, _build, train_v2, code=v2, return_info=True)
    assert not info["cached"]
    assert torch.all(m1[0].weight == 1.0) and torch.all(m2[0].weight == 2.0)
    again = store.load_or_train({"k": 1}, _build, lambda m: pytest.fail("retrained"), code=v1)
    assert torch.all(again[0].weight == 1.0)
    with pytest.raises(TypeError, match="source"):
        store.code_version(3)


def test_cache_files_get_the_folder_permissions(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o775)
    store.load_or_train({"k": 2}, _build, _trainer([]), folder=folder)
    pt, meta = store.checkpoint_paths({"k": 2}, folder)
    for path in (pt, meta):
        assert path.stat().st_mode & 0o777 == 0o664, oct(path.stat().st_mode)


def test_fingerprint_tells_models_and_tensors_apart():
    a, b = _build(), _build()
    assert store.fingerprint(a) == store.fingerprint(b)
    with torch.no_grad():
        b[0].weight[0, 0] += 1e-6
    assert store.fingerprint(a) != store.fingerprint(b)
    x = torch.zeros(3)
    assert store.fingerprint(x) != store.fingerprint(torch.zeros(4))
