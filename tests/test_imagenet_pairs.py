"""The ImageNet path of chapters 01 and 04 on a tiny fake ImageNet folder written here:
the real folder layout and the file names of the paper's CSVs, random images, randomly
initialised torchvision models; nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mcutils import imagenet_pairs, zoo
from mcutils.chapters import ch04_imagenet
from mcutils.core.checks import ParameterError
from mcutils.data import imagenet
from mcutils.data.registry import DatasetNotFoundError


def _write_jpeg(path, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path, "JPEG")


def _fake_imagenet(root, rows: pd.DataFrame, flat: bool = False):
    """Write the files of ``rows`` under ``root/imagenet/val`` in the real layout."""
    names = list(dict.fromkeys([*rows.image1, *rows.image2]))
    for i, n in enumerate(names):
        stem, wnid = n[:-5].rsplit("_", 1)
        folder = root / "imagenet" / "val" / ("" if flat else wnid)
        _write_jpeg(folder / f"{stem}.JPEG", i)
    return names


def test_shipped_pair_lists_match_the_csv_format_and_the_paper_s_numbers():
    within = imagenet.paper_pair_list("within")
    adv = imagenet.paper_pair_list("adversarial")
    assert len(within) == len(adv) == 50 and sorted(within.cls.unique()) == list(range(10))
    assert (within.wnid1 == within.wnid2).all()  # within-class pairs
    assert (adv.wnid1 != adv.wnid2).all()  # the source K is of another class
    assert within.image1.iloc[0] == "ILSVRC2012_val_00046252_n01440764.JPEG"
    assert np.isclose(within["max"].iloc[0], 2.456169366836548)
    assert np.allclose(within.gap, within["max"] - within[["loss1", "loss2"]].max(axis=1))
    with pytest.raises(ParameterError, match="kind"):
        imagenet.paper_pair_list("other")


def test_a_complete_csv_placed_by_the_reader_is_read_instead(tmp_path):
    folder = tmp_path / "imagenet" / "paper_csv"
    folder.mkdir(parents=True)
    shipped = imagenet.paper_pair_list("within")
    src = pd.read_csv(shipped.source.iloc[0])
    src.iloc[:3].to_csv(folder / "interpolation_processed.csv", index=False)
    got = imagenet.paper_pair_list("within", root=tmp_path)
    assert len(got) == 3 and got.source.iloc[0].startswith(str(folder))


def test_missing_imagenet_names_the_folder_and_the_layout_before_any_work(tmp_path):
    names = imagenet.paper_pair_list("within").image1.iloc[:2].tolist()
    with pytest.raises(DatasetNotFoundError) as err:
        imagenet.check_imagenet(names, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "imagenet" / "val") in msg and "<wnid>" in msg and "devkit" in msg
    rows = imagenet.paper_pair_list("within").iloc[:1]
    _fake_imagenet(tmp_path, rows)
    with pytest.raises(DatasetNotFoundError, match="1 of the 2"):
        imagenet.check_imagenet([rows.image1.iloc[0], names[1]], root=tmp_path)
    # the chapter's parameter check says the same before any model is built
    msg = ch04_imagenet.check_imagenet_params({"imagenet_models": ["resnet18"],
                                               "imagenet_pairs": 1})
    assert msg is not None and "imagenet/val" in msg
    assert ch04_imagenet.check_imagenet_params({"imagenet_models": []}) is None


def test_flat_layout_with_devkit_labels(tmp_path):
    from scipy.io import savemat

    rows = imagenet.paper_pair_list("within").iloc[:1]
    _fake_imagenet(tmp_path, rows, flat=True)
    data = tmp_path / "imagenet" / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    n1 = int(rows.image1.iloc[0][15:23])
    n2 = int(rows.image2.iloc[0][15:23])
    truth = np.full(max(n1, n2), 2)
    truth[[n1 - 1, n2 - 1]] = 1
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(map(str, truth)))
    synsets = np.array([(1, rows.wnid1.iloc[0]), (2, "n99999999")],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    savemat(str(data / "meta.mat"), {"synsets": synsets})
    paths = imagenet.check_imagenet([rows.image1.iloc[0], rows.image2.iloc[0]], root=tmp_path)
    assert all(p.parent.name == "val" for p in paths)
    # a file the devkit labels as another class is refused
    truth[n1 - 1] = 2
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(map(str, truth)))
    with pytest.raises(ParameterError, match="devkit"):
        imagenet.check_imagenet([rows.image1.iloc[0]], root=tmp_path)


def test_load_val_images_uses_the_standard_transform(tmp_path):
    _write_jpeg(tmp_path / "a.JPEG", 0)
    x = imagenet.load_val_images([tmp_path / "a.JPEG"], size=32)
    assert x.shape == (1, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_imagenet_models_need_their_weights_or_random_init(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(DatasetNotFoundError, match="hub"):
        zoo.imagenet_model("googlenet")  # offline, no weights: a clear error, no download
    with pytest.raises(ParameterError, match="paper's ImageNet models"):
        zoo.imagenet_model("alexnet", pretrained=False)
    net = zoo.imagenet_model("resnet18", pretrained=False)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("kind", ["within", "adversarial"])
def test_the_paper_protocol_runs_the_csv_pairs_and_compares_row_by_row(tmp_path, kind):
    """Chapter 01's (within) and chapter 04's (adversarial) paths at smoke size."""
    rows = imagenet.paper_pair_list(kind).iloc[[0, 5]]  # classes 0 and 1
    _fake_imagenet(tmp_path, rows)
    torch.manual_seed(0)
    net = zoo.imagenet_model("resnet18", pretrained=False)
    out = imagenet_pairs.run_pair_list(net, rows, kind, root=tmp_path, num_points=4,
                                       attack={"steps": 3, "warmup": 0}, progress=False)
    assert out.image1.tolist() == rows.image1.tolist()
    for col in imagenet_pairs.PAPER_COLUMNS:  # the CSV's numbers, row by row
        assert np.allclose(out[f"paper_{col}"], rows[col])
    assert np.isfinite(out[["loss1", "loss2", "max", "gap"]].to_numpy()).all()
    assert (out["max"] >= out[["loss1", "loss2"]].max(axis=1) - 1e-5).all()
    if kind == "adversarial":
        assert (out.steps >= 1).all() and (out.steps <= 3).all() and (out.l2 > 0).all()
    summary = imagenet_pairs.compare_with_paper(out)
    assert summary["median gap (paper)"].iloc[0] == pytest.approx(float(rows.gap.median()))
    assert summary["pairs"].iloc[0] == 2
    fig = imagenet_pairs.pair_scatter(out, "resnet18")
    assert len(fig.axes[0].collections) == 1


def test_chapter_study_runs_both_kinds_per_model(tmp_path):
    pairs = ch04_imagenet.selected_pairs(pairs_per_kind=1)
    _fake_imagenet(tmp_path, pd.concat(pairs.values()))
    rows = ch04_imagenet.imagenet_study(["resnet18"], pairs_per_kind=1, num_points=3,
                                        attack={"steps": 2, "warmup": 0}, root=tmp_path,
                                        pretrained=False, device="cpu", progress=False)
    assert rows.groupby(["model", "kind"]).size().to_dict() == {("resnet18", "adversarial"): 1,
                                                                 ("resnet18", "within"): 1}
    table = ch04_imagenet.imagenet_summary(rows)
    assert list(table.columns[:2]) == ["model", "kind"] and len(table) == 2
    assert ch04_imagenet.imagenet_study([], root=tmp_path).empty
    with pytest.raises(ParameterError):
        ch04_imagenet.selected_pairs(pairs_per_kind=0)


def test_the_study_checks_the_images_before_building_any_model(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the images were checked")

    monkeypatch.setattr(zoo, "imagenet_model", no_model)
    with pytest.raises(DatasetNotFoundError, match="imagenet/val"):
        ch04_imagenet.imagenet_study(["googlenet"], pairs_per_kind=1, root=tmp_path)
