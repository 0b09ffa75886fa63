"""Downloads with checksums, against a file server on 127.0.0.1 (no internet needed), the
CIFAR-shaped synthetic data and the check of pretrained weights."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
import time

import numpy as np
import pytest
import torch

from mcutils import data
from mcutils.core.checks import ParameterError
from mcutils.data import DatasetNotFoundError, DownloadError, RemoteFile


class _Server:
    """Serves ``files`` (name -> bytes); ``corrupt[name] = k`` spoils the first k answers."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.corrupt: dict[str, int] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                outer.requests.append(name)
                if name not in outer.files:
                    self.send_error(404)
                    return
                body = outer.files[name]
                if outer.corrupt.get(name, 0) > 0:
                    outer.corrupt[name] -= 1
                    body = body[: len(body) // 2] + b"x" * (len(body) - len(body) // 2)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


@pytest.fixture()
def cifar_server(tmp_path, monkeypatch):
    """A tiny CIFAR-10 archive in the real format, served locally, registered as cifar10."""
    src = data.write_cifar10_batches(tmp_path / "src", n_train=10, n_test=4, seed=3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = buf.getvalue()
    members = tuple(
        (f"cifar-10-batches-py/{n}", _md5((src / "cifar-10-batches-py" / n).read_bytes()))
        for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"])
    server = _Server({"cifar-10-python.tar.gz": archive})
    entry = RemoteFile((f"{server.url}/cifar-10-python.tar.gz",), "cifar-10-python.tar.gz",
                       _md5(archive), members=members)
    monkeypatch.setattr(data.download, "_registry", lambda: {"cifar10": [entry]})
    yield server, entry, src
    server.close()


def test_registry_uses_torchvisions_addresses_and_md5s():
    import torchvision.datasets as tvd

    (cifar,) = data.remote_files("cifar10")
    assert cifar.urls == (tvd.CIFAR10.url,) and cifar.checksum == tvd.CIFAR10.tgz_md5
    assert len(cifar.members) == 6
    svhn = data.remote_files("svhn", splits=("test",))
    assert [f.path for f in svhn] == ["test_32x32.mat"]
    mnist = data.remote_files("mnist", splits=("train",))
    assert {f.filename for f in mnist} == {"train-images-idx3-ubyte.gz",
                                          "train-labels-idx1-ubyte.gz"}
    assert all(f.path.startswith("MNIST/raw/") for f in mnist)
    for name in ("digits", "synthetic-cifar10"):
        with pytest.raises(ParameterError, match="never downloaded"):
            data.remote_files(name)


def test_download_verifies_the_checksum_and_extracts(tmp_path, cifar_server):
    server, _, src = cifar_server
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        data.ensure_dataset("cifar10", root)  # no download by default
    assert server.requests == []
    data.ensure_dataset("cifar10", root, download=True)
    assert server.requests == ["cifar-10-python.tar.gz"]
    got = data.load_dataset("cifar10", "test", root=root)
    ref = data.load_dataset("cifar10", "test", root=src)
    assert torch.equal(got.x, ref.x) and torch.equal(got.y, ref.y)
    data.ensure_dataset("cifar10", root, download=True)  # present and verified: no request
    assert len(server.requests) == 1
    assert not list(root.glob(".*.part"))


def test_corrupt_file_on_disk_is_rejected_and_fetched_again(tmp_path, cifar_server):
    server, entry, _ = cifar_server
    root = tmp_path / "data"
    data.ensure_dataset("cifar10", root, download=True)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:-7])  # a truncated member
    (root / entry.path).write_bytes(b"not an archive")  # and a corrupt archive
    with pytest.warns(RuntimeWarning, match="fails its md5 check"):
        data.ensure_dataset("cifar10", root, download=True)
    assert server.requests == ["cifar-10-python.tar.gz"] * 2
    assert hashlib.md5(batch.read_bytes()).hexdigest() == dict(entry.members)[
        "cifar-10-batches-py/data_batch_1"]


def test_corrupt_download_is_discarded_and_retried(tmp_path, cifar_server):
    server, entry, _ = cifar_server
    server.corrupt["cifar-10-python.tar.gz"] = 1
    path = data.fetch_file(entry, tmp_path)
    assert server.requests == ["cifar-10-python.tar.gz"] * 2
    assert hashlib.md5(path.read_bytes()).hexdigest() == entry.checksum


def test_download_that_never_matches_fails_and_leaves_nothing(tmp_path, cifar_server):
    server, _, _ = cifar_server
    server.corrupt["cifar-10-python.tar.gz"] = 99
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="does not match") as exc:
        data.ensure_dataset("cifar10", root, download=True)
    assert not exc.value.offline and str(root) in str(exc.value)
    assert len(server.requests) == 2  # two attempts at the one address
    assert not list(root.iterdir())  # no partial or corrupt file left behind


def test_offline_fails_within_seconds_naming_folder_and_files(tmp_path, cifar_server,
                                                            monkeypatch):
    server, entry, _ = cifar_server
    svhn = RemoteFile((f"{server.url}/test_32x32.mat",), "test_32x32.mat", "0" * 32,
                      splits=("test",))
    monkeypatch.setattr(data.download, "_registry", lambda: {"cifar10": [entry], "svhn": [svhn]})
    server.close()  # nothing listens on the port any more: like a machine without network
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as exc:
        data.ensure_datasets(["cifar10", "svhn"], tmp_path / "data", download=True, timeout=3)
    assert time.perf_counter() - start < 10
    msg = str(exc.value)
    assert str(tmp_path / "data") in msg and "cifar-10-python.tar.gz" in msg
    assert "data_batch_1" in msg  # the extracted alternative is named too
    assert "test_32x32.mat" in msg  # every missing dataset is listed in the one error


def test_mnist_download_through_load_dataset(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    files = {}
    for stem, n in (("train", 6), ("t10k", 4)):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lbl = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr, code in (("images-idx3", img, 3), ("labels-idx1", lbl, 1)):
            header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(
                int(d).to_bytes(4, "big") for d in arr.shape)
            files[f"{stem}-{kind}-ubyte.gz"] = gzip.compress(header + arr.tobytes(), mtime=0)
    server = _Server(files)
    try:
        reg = [RemoteFile((f"{server.url}/{n}",), f"MNIST/raw/{n}", _md5(b),
                          splits=("train",) if n.startswith("train") else ("test",))
               for n, b in files.items()]
        monkeypatch.setattr(data.download, "_registry", lambda: {"mnist": reg})
        ds = data.load_dataset("mnist", "test", root=tmp_path, download=True)
        assert ds.x.shape == (4, 1, 28, 28)
        assert sorted(server.requests) == ["t10k-images-idx3-ubyte.gz",
                                           "t10k-labels-idx1-ubyte.gz"]
    finally:
        server.close()


def test_synthetic_cifar10_is_cifar_format_learnable_and_deterministic(tmp_path):
    a = data.write_cifar10_batches(tmp_path / "a", n_train=500, n_test=200, seed=0)
    b = data.write_cifar10_batches(tmp_path / "b", n_train=500, n_test=200, seed=0)
    for name in ("data_batch_3", "test_batch", "batches.meta"):
        assert (a / "cifar-10-batches-py" / name).read_bytes() == \
            (b / "cifar-10-batches-py" / name).read_bytes()
    train = data.load_dataset("cifar10", "train", root=a)  # the real CIFAR-10 loader
    test = data.load_dataset("cifar10", "test", root=a)
    assert train.x.shape == (500, 3, 32, 32) and len(test) == 200
    assert set(train.y.tolist()) == set(range(10))
    # the classes are learnable: nearest class mean classifies well above chance (0.1)
    means = torch.stack([train.x[train.y == c].mean(0) for c in range(10)])
    pred = torch.cdist(test.x.flatten(1), means.flatten(1)).argmin(1)
    assert (pred == test.y).float().mean() > 0.6
    with pytest.raises(ParameterError):
        data.write_cifar10_batches(tmp_path / "c", n_train=7)


def test_synthetic_cifar10_is_written_on_first_use_under_its_own_name(tmp_path):
    ds = data.load_dataset("synthetic-cifar10", "test", root=tmp_path)
    assert ds.info.name == "synthetic-cifar10" and ds.x.shape[1:] == (3, 32, 32)
    assert (tmp_path / "synthetic-cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    with pytest.raises(DatasetNotFoundError):  # never mistaken for the real CIFAR-10
        data.load_dataset("cifar10", "test", root=tmp_path)


def test_pretrained_weights_location_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as exc:
        data.pretrained_weights_file("resnet18")
    folder = tmp_path / "hub" / "checkpoints"
    assert str(folder) in str(exc.value) and "resnet18-" in str(exc.value)
    import torchvision.models as tvm

    name = tvm.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    folder.mkdir(parents=True)
    (folder / name).write_bytes(b"weights")
    assert data.pretrained_weights_file("resnet18") == folder / name
    with pytest.raises(ParameterError):
        data.pretrained_weights_file("no_such_net")
