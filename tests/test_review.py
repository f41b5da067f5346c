"""Measurements recomputed from corrected section results, and corrections exported for training."""

import math

import numpy as np
import pandas as pd
import pytest

import boneimg as bi
from boneimg.histology.histomorphometry import BONE, SOFT, TUMOUR
from boneimg.histology.review import export_annotations, remeasure_section
from boneimg.io.write import read_table
from boneimg.sample_data.sections import he_section, trap_section


@pytest.fixture(scope="module")
def trap():
    section = trap_section((512, 512), 0.5, seed=2)
    return bi.analyze_section(section.image, stain="trap")


@pytest.fixture(scope="module")
def he():
    section = he_section((384, 384), 0.5, seed=4)
    return bi.analyze_section(section.image, stain="he")


def remeasure(result, *, regions=None, nuclei=None, osteoclasts=None):
    """remeasure_section on `result`, with the given parts replaced."""
    measurements, _ = remeasure_section(
        result.regions if regions is None else regions, result.pixel_size_um, stain=result.stain,
        nuclei=result.nuclei.table[["x", "y"]] if nuclei is None else nuclei,
        osteoclasts=result.osteoclasts if osteoclasts is None else osteoclasts,
        osteoclast_labels=result.osteoclast_labels)
    return measurements


def assert_same(got, expected):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, nan_ok=True, rel=1e-12), key


@pytest.mark.parametrize("which", ["trap", "he"])
def test_unedited_results_give_the_analysis_measurements(which, request):
    result = request.getfixturevalue(which)
    assert_same(remeasure(result), result.measurements)
    if which == "he":
        assert math.isnan(remeasure(result)["N.Oc"])


def test_points_alone_give_the_same_osteoclast_measurements(trap):
    # cells drawn as disks of their area from x, y, n_nuclei, area_um2: the counts do not change
    measurements, _ = remeasure_section(trap.regions, 0.5, stain="trap", nuclei=trap.nuclei.table,
                                        osteoclasts=trap.osteoclasts[["x", "y", "n_nuclei", "area_um2"]])
    assert measurements["N.Oc"] == trap.measurements["N.Oc"]
    assert measurements["N.Oc/B.Pm_per_mm"] == pytest.approx(trap.measurements["N.Oc/B.Pm_per_mm"])


def test_deleting_tumour_cells(he):
    table = he.nuclei.table
    in_tumour = he.regions[np.rint(table["y"]).astype(int), np.rint(table["x"]).astype(int)] == TUMOUR
    k = 3
    assert he.measurements["N.TumourCells"] == in_tumour.sum() > k
    kept = table.drop(index=table.index[in_tumour][:k])
    assert remeasure(he, nuclei=kept)["N.TumourCells"] == he.measurements["N.TumourCells"] - k
    # nuclei outside tumour are not tumour cells
    assert remeasure(he, nuclei=table[~in_tumour])["N.TumourCells"] == 0
    typed = table.assign(cell_type=np.where(np.arange(len(table)) % 2, "immune", "tumour"))
    assert remeasure(he, nuclei=typed)["N.TumourCells"] == int((in_tumour & (np.arange(len(table)) % 2 == 0)).sum())


def test_removing_an_osteoclast(trap):
    before = trap.measurements
    assert before["N.Oc"] >= 2
    counted = trap.osteoclasts.index[trap.osteoclasts["counted"]]
    after = remeasure(trap, osteoclasts=trap.osteoclasts.drop(index=counted[0]))
    assert after["N.Oc"] == before["N.Oc"] - 1
    assert after["B.Pm_mm"] == before["B.Pm_mm"]
    assert after["N.Oc/B.Pm_per_mm"] == pytest.approx((before["N.Oc"] - 1) / before["B.Pm_mm"])
    assert after["Oc.S/BS_pct"] < before["Oc.S/BS_pct"]
    # too few nuclei: still there, no longer counted
    fewer = trap.osteoclasts.assign(n_nuclei=np.where(trap.osteoclasts.index == counted[0], 0,
                                                      trap.osteoclasts["n_nuclei"]))
    assert remeasure(trap, osteoclasts=fewer)["N.Oc"] == before["N.Oc"] - 1


def test_adding_an_osteoclast_without_outline(trap):
    counted = trap.osteoclasts[trap.osteoclasts["counted"]]
    new = counted.iloc[[0]].assign(label=0)  # a second cell on the same bone surface, no outline
    after = remeasure(trap, osteoclasts=pd.concat([trap.osteoclasts, new], ignore_index=True))
    assert after["N.Oc"] == trap.measurements["N.Oc"] + 1


def test_painting_bone(trap):
    regions = trap.regions.copy()
    painted = (regions == SOFT)
    rows = np.flatnonzero(painted.any(axis=1))[:20]
    square = np.zeros_like(painted)
    square[rows] = True
    painted &= square
    regions[painted] = BONE
    after = remeasure(trap, regions=regions)
    assert after["B.Ar_mm2"] == pytest.approx(trap.measurements["B.Ar_mm2"] + painted.sum() * 0.25e-6)
    assert after["T.Ar_mm2"] == pytest.approx(trap.measurements["T.Ar_mm2"])
    assert after["B.Ar/T.Ar_pct"] > trap.measurements["B.Ar/T.Ar_pct"]


def test_closed_form_square():
    regions = np.full((100, 100), SOFT, np.uint8)
    regions[20:60, 20:60] = BONE
    cells = pd.DataFrame({"x": [61.0, 90.0], "y": [40.0, 90.0], "n_nuclei": [2, 3], "area_um2": [20.0, 20.0]})
    m, notes = remeasure_section(regions, 2.0, stain="trap", nuclei=None, osteoclasts=cells)
    assert m["T.Ar_mm2"] == pytest.approx(100 * 100 * 4e-6)
    assert m["B.Ar_mm2"] == pytest.approx(40 * 40 * 4e-6)
    assert m["N.Oc"] == 1 and m["N.TumourCells"] == 0  # the second cell is off bone
    assert m["N.Oc/B.Pm_per_mm"] == pytest.approx(1 / m["B.Pm_mm"])
    assert "N.Oc/TBI.Pm_per_mm" in notes


@pytest.mark.parametrize("kwargs, match", [
    ({"stain": "auto"}, "stain"),
    ({"stain": "trap", "osteoclasts": pd.DataFrame({"x": [1.0], "y": [1.0]})}, "n_nuclei"),
    ({"stain": "trap", "osteoclasts": pd.DataFrame({"x": [1.0], "y": [1.0], "n_nuclei": [1.5]})}, "whole"),
    ({"stain": "he", "nuclei": pd.DataFrame({"x": [np.nan], "y": [1.0]})}, "missing"),
    ({"stain": "he", "min_nuclei": -1}, "min_nuclei"),
    ({"stain": "he", "contact_um": -1.0}, "contact_um"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(bi.BoneImgError, match=match):
        remeasure_section(np.zeros((8, 8), np.uint8), 1.0, **kwargs)


def test_export_annotations(tmp_path):
    section = he_section((96, 128), 0.5, seed=1)
    points = pd.DataFrame({"x": [3.0, 50.5], "y": [7.0, 80.0], "cell_type": ["tumour", "immune"], "area_um2": [1, 2]})
    written = export_annotations(tmp_path / "train", "he 1", section.image,
                                 labels=section.truth["nuclei"].astype(np.uint16), points=points)
    assert [p.name for p in written] == ["he 1.ome.tif", "he 1.labels.tif", "he 1.points.csv"]
    image = bi.load(written[0])
    assert image.spacing_um == (0.5, 0.5)
    np.testing.assert_array_equal(image.data, section.image.data)
    labels = bi.load(written[1])
    assert labels.data.dtype == np.int32 and labels.spacing_um == (0.5, 0.5)
    np.testing.assert_array_equal(labels.data, section.truth["nuclei"])
    table = read_table(written[2])
    assert list(table.columns) == ["x", "y", "cell_type"]
    assert table.values.tolist() == [[3.0, 7.0, "tumour"], [50.5, 80.0, "immune"]]
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == sorted(p.name for p in written)  # no temp files


def test_export_refuses_the_input_folder(tmp_path):
    from boneimg.io.write import save_image

    save_image(tmp_path / "in" / "s.ome.tif", he_section((64, 64), 0.5, seed=1).image)
    image = bi.load(tmp_path / "in" / "s.ome.tif")
    for out in (tmp_path / "in", tmp_path / "in" / "train"):
        with pytest.raises(bi.BoneImgError, match="never writes next to its inputs"):
            export_annotations(out, "s", image)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["s.ome.tif"]
    bad = {"name": "../x"}, {"labels": np.zeros((3, 3), np.int32)}, {"points": pd.DataFrame({"x": [1.0]})}
    for kwargs in bad:
        with pytest.raises(bi.BoneImgError):
            export_annotations(tmp_path / "out", **{"name": "s", "image": image, **kwargs})
    assert not (tmp_path / "out").exists()
    assert export_annotations(tmp_path / "out", "s", image)[0].exists()  # image only
