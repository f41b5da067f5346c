"""The trained nucleus model: safe loading, inference, training data, fine-tuning."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import boneimg as bi
from boneimg.histology.nuclei import model_weights_available
from boneimg.metrics import match_points
from boneimg.models import datasets, targets
from boneimg.models.weights import DEFAULT_MODEL, load_model, model_paths, read_metadata, save_model, sha256
from boneimg.sample_data.sections import he_section, trap_section
from conftest import SHARED_DATA

HISTOLOGY = SHARED_DATA / "histology"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained two-level network saved like a real model."""
    from boneimg.models.network import NucleusNet

    meta = {"architecture": {"widths": [4, 8], "n_types": 4}, "working_pixel_size_um": 0.5,
            "cell_types": list(datasets.CELL_TYPES),
            "postprocess": {"centre_threshold": 0.3, "nucleus_threshold": 0.5, "min_separation_um": 2.0,
                            "seed_radius_um": 1.5}}
    stem = tmp_path_factory.mktemp("model") / "tiny"
    save_model(NucleusNet((4, 8)), meta, stem)
    return stem


def test_shipped_model_is_installed_with_a_card_and_a_matching_checksum():
    assert model_weights_available()
    weights, meta_path = model_paths(DEFAULT_MODEL)
    meta = json.loads(meta_path.read_text())
    assert sha256(weights) == meta["sha256"]
    card = meta_path.with_suffix(".md").read_text()
    assert meta["sha256"] in card and "boneimg train" in card and "licence" in card.lower()
    assert weights.stat().st_size < 5_000_000
    net, _ = load_model()
    assert not net.training


def test_a_tampered_weights_file_is_refused(tiny_model, tmp_path):
    weights, meta_path = model_paths(tiny_model)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "tiny"
    (tmp_path / "tiny.pt").write_bytes(bytes(data))
    (tmp_path / "tiny.json").write_text(meta_path.read_text())
    with pytest.raises(bi.BoneImgError, match="checksum mismatch"):
        load_model(bad)
    (tmp_path / "tiny.pt").write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(bi.BoneImgError, match="checksum mismatch"):
        load_model(bad)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading weights",))


def test_weights_that_would_run_code_are_refused_even_with_a_matching_checksum(tiny_model, tmp_path, capsys):
    import torch

    stem = tmp_path / "evil"
    torch.save({"head.weight": _Payload()}, stem.with_suffix(".pt"))
    meta = read_metadata(tiny_model)
    meta["sha256"] = sha256(stem.with_suffix(".pt"))
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(bi.BoneImgError, match="cannot load the weights"):
        load_model(stem)
    assert "code ran" not in capsys.readouterr().out


def test_unknown_model_names_the_shipped_ones(tmp_path):
    with pytest.raises(bi.BoneImgError, match=f"shipped models: .*{DEFAULT_MODEL}"):
        bi.segment_nuclei(np.zeros((64, 64, 3), np.uint8), pixel_size_um=0.5, model=tmp_path / "nothing")


def test_model_detects_real_nuclei_and_classifies_them():
    record = next(r for r in datasets.crchisto(HISTOLOGY) if r.split == "validation")
    nuclei = bi.segment_nuclei(record.image, method="model")
    assert nuclei.method == "model" and nuclei.parameters["model"] == DEFAULT_MODEL
    score = match_points(nuclei.xy(), record.points, 6.0)
    assert score.f1 > 0.6, score
    assert set(nuclei.table["cell_type"]) <= set(datasets.CELL_TYPES)
    # every nucleus owns its label, and the table agrees with the label image
    ids = np.unique(nuclei.labels)[1:]
    assert set(ids) == set(nuclei.table["label"])
    counts = np.bincount(nuclei.labels.ravel())[nuclei.table["label"]]
    assert np.allclose(nuclei.table["area_um2"], counts * 0.55 ** 2)


def test_model_is_the_auto_choice_and_deterministic():
    image = he_section((256, 256), 0.5, seed=3).image
    a = bi.segment_nuclei(image)
    b = bi.segment_nuclei(image, method="model")
    assert a.method == "model"
    assert np.array_equal(a.labels, b.labels)
    assert bi.segment_nuclei(image, method="classical").method == "classical"


def test_model_counts_the_same_tissue_alike_at_20x_and_40x():
    counts = [bi.segment_nuclei(he_section((int(200 / px),) * 2, px, seed=5).image, method="model").count
              for px in (0.5, 0.25)]
    truth = he_section((400, 400), 0.5, seed=5).truth["nuclei_table"]
    assert abs(counts[1] - counts[0]) <= 0.08 * counts[0]
    assert abs(counts[0] - len(truth)) <= 0.15 * len(truth)


@pytest.mark.parametrize("pixel_size_um", [0.5, 0.55])  # 0.55: windows resampled on one shared grid
def test_tiled_model_inference_matches_whole_image(pixel_size_um):
    image = he_section((600, 600), 0.5, seed=2).image.with_spacing(pixel_size_um)
    whole = bi.segment_nuclei(image, method="model")
    tiled = bi.segment_nuclei(image, method="model", tile_size_px=200)
    assert tiled.parameters["tiled"] and not whole.parameters["tiled"]
    score = match_points(tiled.xy(), whole.xy(), 1.0)
    assert score.f1 > 0.98, score


def test_targets_put_exact_peaks_on_the_centres_and_scale_with_the_pixel_size():
    section = he_section((100, 100), 0.25, seed=1)
    table = section.truth["nuclei_table"]
    record = datasets.Annotated("s", section.image, table[["x", "y"]].to_numpy(float),
                                labels=section.truth["nuclei"])
    t = targets.make_targets(record, 0.5)
    assert t.rgb.shape == (50, 50, 3)
    peaks = np.argwhere(t.centre == 1.0)
    expected = np.rint((table[["y", "x"]].to_numpy() + 0.5) * 0.5 - 0.5)
    inside = (expected >= 0).all(1) & (expected < 50).all(1)
    assert {tuple(p) for p in peaks} == {tuple(p) for p in expected[inside].astype(int)}
    assert set(np.unique(t.nucleus)) <= {0, 1}
    labels = np.asarray(section.truth["nuclei"])[::2, ::2]
    assert abs((t.nucleus == 1).sum() - (labels > 0).sum()) < 0.1 * (labels > 0).sum()


def test_boundary_distance_is_one_at_each_nucleus_core():
    labels = np.zeros((20, 30), np.int32)
    labels[2:12, 2:12] = 1
    labels[2:12, 12:20] = 2  # touching: separated
    d = targets.boundary_distance(labels)
    for i in (1, 2):
        assert d[labels == i].max() == pytest.approx(1.0)
    assert d[labels == 0].max() == 0
    assert d[6, 11] == 0 and d[6, 12] == 0  # the shared border


def _export(folder, seeds, shape=(200, 200)):
    from boneimg.histology.review import export_annotations

    for seed in seeds:
        section = trap_section(shape, 0.5, seed=seed)
        table = section.truth["nuclei_table"]
        export_annotations(folder, f"trap_{seed}", section.image, labels=section.truth["nuclei"],
                           points=table[["x", "y"]])


def test_annotation_folder_reads_what_the_plugin_exports(tmp_path):
    _export(tmp_path / "ann", [1, 2])
    records = datasets.annotation_folder(tmp_path / "ann")
    assert [r.name for r in records] == ["ann/trap_1", "ann/trap_2"]
    truth = trap_section((200, 200), 0.5, seed=1).truth
    assert np.array_equal(records[0].labels, truth["nuclei"])
    assert np.allclose(records[0].points, truth["nuclei_table"][["x", "y"]])
    assert records[0].image.spacing_um == (0.5, 0.5)


def test_annotation_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(bi.BoneImgError, match="no annotated images"):
        (tmp_path / "empty").mkdir()
        datasets.annotation_folder(tmp_path / "empty")
    _export(tmp_path / "bad", [1])
    pd.DataFrame({"x": [1.0], "y": [2.0], "cell_type": ["alien"]}).to_csv(tmp_path / "bad" / "trap_1.points.csv",
                                                                          index=False)
    with pytest.raises(bi.BoneImgError, match="unknown cell types.*trap_1.points.csv|trap_1.points.csv.*alien"):
        datasets.annotation_folder(tmp_path / "bad")


def test_fine_tuning_from_the_command_line_writes_a_model_that_segments(tiny_model, tmp_path):
    _export(tmp_path / "ann", [1])
    out = tmp_path / "out" / "mine"
    result = subprocess.run([str(Path(sys.executable).with_name("boneimg")), "train", "--from", str(tiny_model), "--data",
                             str(tmp_path / "ann"), "--out", str(out), "--steps", "3"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    meta = read_metadata(out)
    assert meta["base_model"]["sha256"] == read_metadata(tiny_model)["sha256"]
    assert meta["training"]["steps"] == 3 and "--from" in meta["training"]["command"]
    assert sha256(out.with_suffix(".pt")) != sha256(model_paths(tiny_model)[0])
    nuclei = bi.segment_nuclei(he_section((128, 128), 0.5).image, model=out)
    assert nuclei.labels.shape == (128, 128) and nuclei.parameters["model"] == "mine"


def test_training_images_come_from_held_out_splits():
    """Images scored in the model card are never trained on."""
    bm = list(datasets.bm_graz(HISTOLOGY))
    cpm = list(datasets.cpm15(HISTOLOGY))
    assert {r.name.split("_")[-2] for r in bm if r.split == "test"} == {"0003", "0006"}
    assert not {r.name for r in bm if r.split == "test"} & {r.name for r in bm if r.split == "train"}
    assert sum(r.split == "test" for r in cpm) == 5
    assert sum(r.split == "validation" for r in datasets.crchisto(HISTOLOGY)) == 10


def test_centre_smoothing_joins_a_spread_peak_and_keeps_two_nuclei_apart():
    from boneimg.models.inference import instances

    # working grid 0.5 µm/px; nucleus A's centre probability is split over two maxima 2.5 µm
    # apart (an uncertain network), nucleus B, 8 µm away, has one sharp peak
    centre = np.zeros((40, 60), np.float32)
    centre[20, 15], centre[20, 20] = 0.3, 0.3
    centre[20, 36] = 0.6
    nucleus = np.zeros_like(centre)
    nucleus[14:27, 10:26] = nucleus[14:27, 31:42] = 1
    maps = {"centre": centre, "nucleus": nucleus, "distance": nucleus, "cell_type": None}
    post = {"nucleus_threshold": 0.5, "min_separation_um": 2.0, "seed_radius_um": 1.5}
    _, raw, _ = instances(maps, 0.5, centre_threshold=0.2, **post)
    assert len(raw) == 3  # A read as two nuclei
    labels, smooth, _ = instances(maps, 0.5, centre_threshold=0.005, centre_smoothing_um=1.5, **post)
    assert len(smooth) == 2
    assert sorted(smooth[:, 1]) == [pytest.approx(17.5, abs=0.6), 36]  # A's centre between its maxima
    assert len(np.unique(labels[14:27, 10:26])) == 1 and labels[20, 36] != labels[20, 17]


def test_fused_network_computes_what_the_trained_one_does():
    import torch

    from boneimg.models.network import NucleusNet

    torch.manual_seed(0)
    net = NucleusNet((4, 8, 16), n_types=4)
    with torch.no_grad():  # batch norms with non-trivial statistics, as after training
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    x = torch.rand(2, 3, 64, 48)
    with torch.inference_mode():
        expected = net(x)
        fused = net.fuse_batch_norms().fuse_batch_norms()  # fusing twice changes nothing more
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        assert torch.allclose(fused(x), expected, atol=1e-5)
        assert torch.allclose(fused(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5)
