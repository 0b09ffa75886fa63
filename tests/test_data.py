"""Loaders tested on small files written in each dataset's real on-disk format."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from mcutils import data
from mcutils.core.checks import ParameterError
from mcutils.data import DatasetNotFoundError, load_dataset


def _write_idx(path, array, gz):
    codes = {np.uint8: 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _mnist_files(folder, n_train=12, n_test=7, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lbl = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(folder / f"{stem}-images-idx3-ubyte", img, gz)
        _write_idx(folder / f"{stem}-labels-idx1-ubyte", lbl, gz)
        arrays[stem] = (img, lbl)
    return arrays


@pytest.mark.parametrize("layout", ["", "raw", "MNIST/raw"])
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_loader(tmp_path, layout, gz):
    arrays = _mnist_files(tmp_path / layout if layout else tmp_path, gz=gz)
    ds = load_dataset("mnist", "test", root=tmp_path)
    img, lbl = arrays["t10k"]
    assert ds.x.shape == (7, 1, 28, 28) and ds.x.dtype == torch.float32
    assert torch.allclose(ds.x[:, 0] * 255, torch.from_numpy(img).float())
    assert torch.equal(ds.y, torch.from_numpy(lbl.astype(np.int64)))
    assert 0 <= ds.x.min() and ds.x.max() <= 1
    assert len(load_dataset("mnist", "train", root=tmp_path)) == 12


def test_truncated_idx_is_an_error(tmp_path):
    _mnist_files(tmp_path, gz=False)
    f = tmp_path / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("mnist", "test", root=tmp_path)


def test_cifar10_pickle_loader(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    expected = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        raw = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, 4).tolist()
        with open(base / name, "wb") as f:
            pickle.dump({b"data": raw, b"labels": labels, b"batch_label": name.encode()}, f)
        expected[name] = (raw, labels)
    test = load_dataset("cifar10", "test", root=tmp_path)
    raw, labels = expected["test_batch"]
    assert test.x.shape == (4, 3, 32, 32)
    assert torch.allclose(test.x * 255, torch.from_numpy(raw.reshape(4, 3, 32, 32)).float())
    assert test.y.tolist() == labels
    train = load_dataset("cifar10", "train", root=tmp_path)
    assert len(train) == 20
    assert train.y.tolist() == sum((expected[f"data_batch_{i}"][1] for i in range(1, 6)), [])


def test_svhn_mat_loader(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    ds = load_dataset("svhn", "test", root=tmp_path)
    assert ds.x.shape == (5, 3, 32, 32)
    assert ds.y.tolist() == [0, 1, 2, 0, 9]  # SVHN stores digit 0 as label 10
    assert torch.allclose(ds.x[1, 2] * 255, torch.from_numpy(x[:, :, 2, 1]).float())


def test_digits_loader_splits_are_disjoint_and_complete():
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert train.x.shape[1:] == (1, 8, 8)
    assert len(train) + len(test) == 1797
    assert 0 <= float(train.x.min()) and float(train.x.max()) <= 1
    rows = {tuple(r.flatten().tolist()) for r in train.x}
    assert sum(tuple(r.flatten().tolist()) in rows for r in test.x) < 20  # few true duplicates


@pytest.mark.skipif(not data.FASHION_SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist missing")
def test_fashion_mnist_from_system_folder():
    ds = load_dataset("fashion-mnist", "test")
    assert ds.x.shape == (10000, 1, 28, 28)
    assert sorted(ds.y.unique().tolist()) == list(range(10))
    assert ds.classes[0] == "T-shirt/top"


def test_subset_is_seeded_and_sized(tmp_path):
    _mnist_files(tmp_path, n_train=50)
    a = load_dataset("mnist", "train", root=tmp_path, subset=10, seed=3)
    b = load_dataset("mnist", "train", root=tmp_path, subset=10, seed=3)
    c = load_dataset("mnist", "train", root=tmp_path, subset=10, seed=4)
    assert len(a) == 10 and torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as exc:
        load_dataset("cifar10", "train", root=tmp_path)
    assert "download=True" in str(exc.value) and "cifar-10-batches-py" in str(exc.value)


def test_missing_fashion_mentions_debian_package(tmp_path, monkeypatch):
    for module in (data.loading, data.download):  # the modules that look there
        monkeypatch.setattr(module, "FASHION_SYSTEM_DIR", tmp_path / "nothing")
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "test", root=tmp_path)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ParameterError, match="fashion-mnist"):
        load_dataset("imagenet21k")
    with pytest.raises(ParameterError, match="split"):
        load_dataset("digits", "validation")
    with pytest.raises(ParameterError, match="subset"):
        load_dataset("digits", subset=0)


def test_tensor_loader_batches_and_shuffles():
    ds = load_dataset("digits", "test")
    loader = data.TensorLoader(ds, batch_size=64, shuffle=True, seed=1)
    batches = list(loader)
    assert len(batches) == len(loader) == -(-len(ds) // 64)
    ys = torch.cat([b[1] for b in batches])
    assert sorted(ys.tolist()) == sorted(ds.y.tolist())
    assert not torch.equal(ys, ds.y)
    second = torch.cat([b[1] for b in loader])  # a new epoch reshuffles
    assert not torch.equal(second, ys)
    assert len(data.TensorLoader(ds, 64, drop_last=True)) == len(ds) // 64


def test_class_pairs_same_label_distinct():
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    i, j = data.class_pairs(y, 5, seed=0)
    assert len(i) == 10  # class 2 has one member and is skipped
    assert torch.equal(y[i], y[j]) and bool((i != j).all())


def test_split_off_is_disjoint():
    ds = load_dataset("digits", "test")
    a, b = ds.split_off(100, seed=0)
    assert len(a) == 100 and len(b) == len(ds) - 100
