"""Fetching datasets and checking pretrained weights, for machines with a network.

:func:`ensure_dataset` fetches the original files at torchvision's published addresses,
verifies each file's MD5, removes a corrupt file and fetches it again; without a network
the error names the folder and the files to place there. Nothing in the default path
downloads. :func:`pretrained_weights_file` checks where the ImageNet weights of a
torchvision model are.

Used by the runners before any chapter starts (:mod:`mcutils.tooling.preflight`, for
profiles that list ``download``) and by chapters 01 and 04 under the gpu profile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from mcutils.data.formats import _IDX_STEMS, _find_file, _idx_folders
from mcutils.data.registry import (
    FASHION_SYSTEM_DIR,
    SPLITS,
    DatasetNotFoundError,
    _default_root,
    dataset_info,
)
from mcutils.data.synthetic import _synthetic_folder, write_cifar10_batches

from mcutils.core.checks import ParameterError

__all__ = ["DownloadError", "RemoteFile", "remote_files", "fetch_file", "ensure_dataset", "ensure_datasets", "pretrained_weights_file"]


class DownloadError(DatasetNotFoundError):
    """A file could not be fetched (no network, HTTP error, or a checksum that never matched)."""

    def __init__(self, message: str, offline: bool = False):
        super().__init__(message)
        self.offline = offline


@dataclass(frozen=True)
class RemoteFile:
    """One original file of a dataset (or of model weights) and how to check it.

    Attributes:
        urls: addresses tried in turn (mirrors).
        path: where it goes, relative to the data root (``MNIST/raw/...``).
        checksum: the expected hex digest (``algorithm`` ``md5``) or its leading digits
            (``sha256``, as in torchvision's weight file names).
        algorithm: ``"md5"`` or ``"sha256"``.
        splits: the splits this file holds.
        members: for an archive, the files it holds once extracted, as
            ``(path relative to the root, md5)``; they are checked after extraction.
    """

    urls: tuple[str, ...]
    path: str
    checksum: str
    algorithm: str = "md5"
    splits: tuple[str, ...] = SPLITS
    members: tuple[tuple[str, str], ...] = ()

    @property
    def filename(self) -> str:
        return Path(self.path).name


def _registry() -> dict[str, list[RemoteFile]]:
    """The original files of each downloadable dataset, with torchvision's addresses and MD5s."""
    import torchvision.datasets as tvd

    def idx(cls, folder: str) -> list[RemoteFile]:
        return [RemoteFile(tuple(m + fname for m in cls.mirrors), f"{folder}/raw/{fname}", md5,
                           splits=("train",) if fname.startswith("train") else ("test",))
                for fname, md5 in cls.resources]

    base = tvd.CIFAR10.base_folder
    members = tuple((f"{base}/{n}", m) for n, m in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list)
    return {
        "mnist": idx(tvd.MNIST, "MNIST"),
        "fashion-mnist": idx(tvd.FashionMNIST, "FashionMNIST"),
        "cifar10": [RemoteFile((tvd.CIFAR10.url,), tvd.CIFAR10.filename, tvd.CIFAR10.tgz_md5,
                               members=members)],
        "svhn": [RemoteFile((url,), fname, md5, splits=(split,))
                 for split, (url, fname, md5) in tvd.SVHN.split_list.items() if split in SPLITS],
    }


def remote_files(name: str, splits: Sequence[str] = SPLITS) -> list[RemoteFile]:
    """The original files of a dataset that hold ``splits`` (torchvision's addresses and MD5s).

    Raises:
        ParameterError: an unknown dataset, or one that is never downloaded (``digits``
            comes with scikit-learn, ``synthetic-cifar10`` is written locally).
    """
    dataset_info(name)
    reg = _registry()
    if name not in reg:
        raise ParameterError(f"dataset {name!r} is never downloaded; downloadable: "
                             f"{', '.join(reg)}")
    return [f for f in reg[name] if set(f.splits) & set(splits)]


def _digest(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches(path: Path, remote: RemoteFile) -> bool:
    return _digest(path, remote.algorithm).startswith(remote.checksum.lower())


def _download_to(url: str, target: Path, algorithm: str, timeout: float) -> str:
    """Stream ``url`` into a temporary file beside ``target``; return (temp path, digest)."""
    import urllib.request

    h = hashlib.new(algorithm)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "mcutils"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp, h.hexdigest()


def fetch_file(remote: RemoteFile, root: str | Path, timeout: float = 10.0,
               attempts: int = 2) -> Path:
    """Make sure ``root / remote.path`` exists with the right checksum, downloading it if not.

    A file already there with a wrong checksum is removed (with a warning) and fetched
    again; a download whose checksum does not match is discarded and tried again, up
    to ``attempts`` times per address. A file is only ever moved into place whole
    (written beside it, then :func:`os.replace`).

    Args:
        remote: the file (see :func:`remote_files`).
        root: the data root.
        timeout: seconds to wait for a connection or for data before giving up.
        attempts: downloads per address when the checksum does not match.

    Returns:
        The verified file's path.

    Raises:
        DownloadError: every address failed; ``offline`` is True when the failures were
            network errors (no connection, no name resolution, time-out).
    """
    from urllib.error import HTTPError, URLError

    if attempts < 1 or timeout <= 0:
        raise ParameterError(f"need attempts >= 1 and timeout > 0 (got {attempts}, {timeout})")
    target = Path(root) / remote.path
    if target.is_file():
        if _matches(target, remote):
            return target
        warnings.warn(f"{target} fails its {remote.algorithm} check (expected "
                      f"{remote.checksum}); removing it and fetching it again",
                      RuntimeWarning, stacklevel=2)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    network_only = True
    for url in remote.urls:
        for _ in range(attempts):
            try:
                tmp, digest = _download_to(url, target, remote.algorithm, timeout)
            except HTTPError as exc:
                errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                network_only = False
                break
            except (URLError, OSError) as exc:  # no route, no DNS, refused, time-out
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                break
            if digest.startswith(remote.checksum.lower()):
                os.replace(tmp, target)
                return target
            os.unlink(tmp)
            network_only = False
            errors.append(f"{url}: {remote.algorithm} {digest} does not match {remote.checksum}")
    raise DownloadError(f"could not fetch {remote.filename}: " + "; ".join(errors),
                        offline=network_only)


def _extract(archive: Path, root: Path) -> None:
    import tarfile

    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(root)


def _present(name: str, root: Path, splits: Sequence[str]) -> bool:
    """Whether the loader would find every split (no checksums: the default path is fast)."""
    for split in splits:
        if name in ("mnist", "fashion-mnist"):
            folders = _idx_folders(root, "MNIST" if name == "mnist" else "FashionMNIST")
            if name == "fashion-mnist":
                folders = [FASHION_SYSTEM_DIR, *folders]
            if any(_find_file(folders, stem) is None for stem in _IDX_STEMS[split]):
                return False
        elif name in ("cifar10", "synthetic-cifar10"):
            folder = _synthetic_folder(root) if name == "synthetic-cifar10" else root
            names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
            if not any(all((base / n).is_file() for n in names)
                       for base in (folder / "cifar-10-batches-py", folder)):
                return False
        elif name == "svhn" and not (root / f"{split}_32x32.mat").is_file():
            return False
    return True


def _placement_hint(name: str, root: Path, splits: Sequence[str]) -> str:
    files = []
    for f in remote_files(name, splits):
        extra = ""
        if f.members:
            folder = f.members[0][0].split("/")[0]
            extra = f", or the extracted folder {folder}/ ({', '.join(Path(m).name for m, _ in f.members)})"
        files.append(f"{f.path} ({f.algorithm} {f.checksum}; from {f.urls[0]}){extra}")
    return f"place these files in {root}: " + "; ".join(files)


def ensure_dataset(name: str, root: str | Path | None = None, download: bool = False,
                   splits: Sequence[str] = SPLITS, timeout: float = 10.0) -> Path:
    """Make sure a dataset's files are on disk; download and verify them if asked.

    With ``download=True``, files at their original paths are checked against
    torchvision's MD5s (a corrupt one is removed and fetched again), missing ones are
    fetched, an archive is extracted and its members are checked. Without it, only
    their presence is checked (no hashing in the default path). ``synthetic-cifar10``
    is written locally (:func:`~mcutils.data.synthetic.write_cifar10_batches`); ``digits`` needs no files.

    Args:
        name: a registered dataset.
        root: the data root (default ``$MCUTILS_DATA`` or ``~/.cache/mcutils-data``).
        download: fetch missing or corrupt files.
        splits: the splits needed.
        timeout: network time-out in seconds per connection.

    Returns:
        The data root.

    Raises:
        DatasetNotFoundError: the files are missing and could not be fetched; the
            message names the folder and the files to place there (a
            :class:`DownloadError` with ``offline=True`` when the network was unreachable).
    """
    dataset_info(name)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ParameterError(f"split(s) {bad} not known; valid values: {', '.join(SPLITS)}")
    root_path = Path(root) if root is not None else _default_root()
    if name == "digits":
        return root_path
    if name == "synthetic-cifar10":
        if not _present(name, root_path, splits):
            write_cifar10_batches(_synthetic_folder(root_path))
        return root_path
    present = _present(name, root_path, splits)
    if not download:
        if present:
            return root_path
        raise DatasetNotFoundError(f"dataset {name!r} is not in {root_path}; "
                                   + _placement_hint(name, root_path, splits)
                                   + " (or let the gpu profile download them with internet access)")
    try:
        for remote in remote_files(name, splits):
            if remote.members:
                if all((root_path / m).is_file() and _digest(root_path / m) == md5
                       for m, md5 in remote.members):
                    continue
                archive = fetch_file(remote, root_path, timeout=timeout)
                _extract(archive, root_path)
                wrong = [m for m, md5 in remote.members
                         if not (root_path / m).is_file() or _digest(root_path / m) != md5]
                if wrong:
                    archive.unlink()
                    raise DownloadError(f"{archive.name} extracted, but {wrong} fail their MD5 "
                                        "check; the archive was removed")
            elif present and not (root_path / remote.path).is_file():
                continue  # the loader finds the split elsewhere (e.g. uncompressed IDX files)
            else:
                fetch_file(remote, root_path, timeout=timeout)
    except DownloadError as exc:
        raise DownloadError(f"dataset {name!r} is not complete in {root_path} and could not be "
                            f"downloaded ({exc}). Without internet, "
                            + _placement_hint(name, root_path, splits), offline=exc.offline
                            ) from exc
    return root_path


def ensure_datasets(names: Sequence[str], root: str | Path | None = None,
                    download: bool = False, timeout: float = 10.0) -> Path:
    """:func:`ensure_dataset` for several datasets, failing once with every problem listed.

    After the first network failure no further download is tried (the machine is taken
    to be offline), so an offline run fails within seconds.
    """
    problems: list[str] = []
    root_path = Path(root) if root is not None else _default_root()
    for name in dict.fromkeys(names):
        try:
            ensure_dataset(name, root_path, download=download, timeout=timeout)
        except DownloadError as exc:
            problems.append(str(exc))
            if exc.offline:
                download = False
        except DatasetNotFoundError as exc:
            problems.append(str(exc))
    if problems:
        raise DatasetNotFoundError("\n".join(problems))
    return root_path


def pretrained_weights_file(arch: str, download: bool = False, timeout: float = 10.0) -> Path:
    """Where torchvision keeps the ImageNet weights of ``arch``; check they are there.

    The weights live in ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``) under
    the file name of torchvision's address, whose digits are the leading SHA-256 digits
    of the file. Chapters 01 and 04 need them for ``model: torchvision:<arch>`` with
    ``pretrained: true``; the runner calls this before any chapter starts.

    Args:
        arch: a torchvision classification architecture (``googlenet``, ``resnet18``).
        download: fetch them (SHA-256 prefix checked) if they are missing.
        timeout: network time-out in seconds.

    Returns:
        The weights file.

    Raises:
        ParameterError: torchvision has no weights for ``arch``.
        DatasetNotFoundError: the file is missing (the message names the folder, the
            file and its address).
    """
    import re

    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ParameterError(f"torchvision has no pretrained weights for {arch!r} ({exc})") from exc
    url = weights.url
    filename = url.rsplit("/", 1)[-1]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / filename
    if target.is_file():
        return target
    if download:
        match = re.search(r"-([a-f0-9]{6,})\.", filename)
        remote = RemoteFile((url,), filename, match.group(1) if match else "", "sha256")
        try:
            return fetch_file(remote, folder, timeout=timeout)
        except DownloadError as exc:
            raise DownloadError(f"ImageNet weights of torchvision:{arch} are not in {folder} and "
                                f"could not be downloaded ({exc}); place {filename} (from {url}) "
                                "there", offline=exc.offline) from exc
    raise DatasetNotFoundError(
        f"ImageNet weights of torchvision:{arch} are not in {folder}: place {filename} (from "
        f"{url}) there, or set TORCH_HOME to a folder whose hub/checkpoints holds it, or use "
        "pretrained=False")
