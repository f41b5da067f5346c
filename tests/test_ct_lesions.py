"""bi.analyze_ct on synthetic long bones with exact truth, and on real trabecular bone."""

import math
import re

import numpy as np
import pytest

import boneimg as bi
from boneimg.ct import _inputs
from boneimg.ct.lesions import class_threshold_pct, lesion_class
from boneimg.sample_data import phantoms

VOXEL_UM = 15.0


@pytest.fixture(scope="module")
def mixed():
    return phantoms.lesion_phantom("mixed", voxel_size_um=VOXEL_UM, seed=0)


@pytest.fixture(scope="module")
def mixed_reference(mixed):
    return bi.analyze_ct(mixed.image, reference=mixed.truth["reference"])


@pytest.fixture(scope="module")
def mixed_alone(mixed):
    return bi.analyze_ct(mixed.image)


def relative_error(measured, truth):
    return abs(measured - truth) / truth


def test_reference_mode_measures_lytic_and_blastic_volumes(mixed, mixed_reference):
    m, truth = mixed_reference.measurements, mixed.truth["volumes_mm3"]
    assert mixed_reference.mode == "reference"
    assert m["lesion_class"] == mixed.truth["lesion_class"] == "mixed"
    assert relative_error(m["Lytic.V_mm3"], truth["Lytic"]) < 0.05
    assert relative_error(m["Blastic.V_mm3"], truth["Blastic"]) < 0.05
    for key in ("Lytic.Tb", "Lytic.Ct", "Blastic.Ma", "Blastic.Ps"):
        assert relative_error(m[f"{key}.V_mm3"], truth[key]) < 0.10, key
    assert m["Lytic.V/Tt.V_pct"] == pytest.approx(100 * m["Lytic.V_mm3"] / m["Ref.Tt.V_mm3"])
    assert relative_error(m["Ref.Tt.V_mm3"], truth["TV"]) < 0.02


def test_reference_mode_lesion_labels_overlap_the_truth(mixed, mixed_reference):
    for value, name in ((1, "lytic"), (2, "blastic")):
        found, true = mixed_reference.lesions == value, mixed.truth[name]
        dice = 2 * (found & true).sum() / (found.sum() + true.sum())
        assert dice > 0.85, name
    assert mixed_reference.lesions.dtype == np.uint8
    assert mixed_reference.lesions.shape == mixed.image.shape


def test_perforations_are_counted_exactly_in_both_modes(mixed, mixed_reference, mixed_alone):
    assert mixed.truth["n_perforations"] == 5
    for result in (mixed_reference, mixed_alone):
        assert result.measurements["Ct.Perf.N"] == 5
        assert result.perforations.max() == 5 and len(result.perforation_areas_mm2) == 5
    # the two 320 µm walls of the through lesion are the largest holes
    areas = sorted(mixed_reference.perforation_areas_mm2)
    true_areas = sorted(p["area_mm2"] for p in mixed.truth["perforations"])
    assert areas[-1] == pytest.approx(true_areas[-1], rel=0.25)


def test_no_reference_mode_flags_the_lesions(mixed, mixed_alone):
    m, truth = mixed_alone.measurements, mixed.truth["volumes_mm3"]
    assert mixed_alone.mode == "no-reference"
    assert m["lesion_class"] == "mixed"
    # estimates: the right size, not the 5 % of the reference mode
    assert relative_error(m["Lytic.V_mm3"], truth["Lytic"]) < 0.35
    assert relative_error(m["Blastic.V_mm3"], truth["Blastic"]) < 0.35


def test_results_record_mode_threshold_parameters_and_voxel_size(mixed_reference):
    r = mixed_reference
    assert r.method == "iso50 on the reference, applied to both"
    assert 0 < r.threshold < 255
    assert r.voxel_size_um == (VOXEL_UM,) * 3
    assert r.parameters["class_threshold_pct"] == 1.0 and r.parameters["method"] == "iso50"
    assert set(np.unique(r.compartments)) == {0, 1, 2}
    for key in ("Lytic.V_mm3", "Blastic.V_mm3", "Ct.Perf.N", "lesion_class", "BV/TV_pct", "Tb.Th_um",
                "Tb.Sp_um", "Tb.N_per_mm", "BS/BV_per_mm", "Conn.D_per_mm3", "Tb.Sp.SD_um", "Tb.Sp.max_um"):
        assert key in r.measurements, key
    # measurements map symbols to values; how they were made lives beside them
    assert all(isinstance(v, (int, float)) for k, v in r.measurements.items() if k != "lesion_class")
    assert r.provenance["bone_morphometry"]["voxel_size_um"] == (VOXEL_UM,) * 3
    assert "bone_morphometry" not in r.notes
    assert math.isnan(r.measurements["BMD_mgHA_cm3"]) and "calibration" in r.notes["BMD_mgHA_cm3"]


@pytest.mark.parametrize("kind, expected", [("blastic", "osteoblastic"), ("none", "none")])
def test_lesion_class_of_single_kind_phantoms(kind, expected):
    phantom = phantoms.lesion_phantom(kind, voxel_size_um=VOXEL_UM, seed=1)
    assert phantom.truth["lesion_class"] == expected
    with_reference = bi.analyze_ct(phantom.image, reference=phantom.truth["reference"]).measurements
    alone = bi.analyze_ct(phantom.image).measurements
    assert with_reference["lesion_class"] == alone["lesion_class"] == expected
    assert with_reference["Ct.Perf.N"] == alone["Ct.Perf.N"] == phantom.truth["n_perforations"]
    if kind == "none":
        assert with_reference["Lytic.V_mm3"] == with_reference["Blastic.V_mm3"] == 0.0
        assert alone["Lytic.V/Tt.V_pct"] < 0.2 and alone["Blastic.V/Tt.V_pct"] < 0.2


def test_anisotropic_voxels_give_the_same_mm3(mixed, mixed_reference):
    coarse = phantoms.lesion_phantom("mixed", voxel_size_um=(25.0, VOXEL_UM, VOXEL_UM), seed=0)
    result = bi.analyze_ct(coarse.image, reference=coarse.truth["reference"]).measurements
    for key in ("Lytic", "Blastic"):
        assert relative_error(result[f"{key}.V_mm3"], coarse.truth["volumes_mm3"][key]) < 0.06
        assert relative_error(result[f"{key}.V_mm3"], mixed_reference.measurements[f"{key}.V_mm3"]) < 0.06
    assert result["Ct.Perf.N"] == 5 and result["lesion_class"] == "mixed"


def test_signed_hounsfield_volumes_give_the_same_lesions(mixed_reference):
    # 8/16-bit and float grey values: tests/test_ct_segment.py; here the signed int16 HU case
    phantom = phantoms.lesion_phantom("mixed", voxel_size_um=VOXEL_UM, seed=0, dtype="int16")
    assert phantom.image.dtype == np.int16 and phantom.image.data.min() < 0
    m = bi.analyze_ct(phantom.image, reference=phantom.truth["reference"]).measurements
    for key in ("Lytic.V_mm3", "Blastic.V_mm3"):
        assert relative_error(m[key], mixed_reference.measurements[key]) < 0.03, key
    assert m["Ct.Perf.N"] == 5 and m["lesion_class"] == "mixed"


def tube(wall_um, spacing_um, outer_um=400.0, length_um=200.0):
    shape = [int(round(e / s)) for e, s in zip((length_um, 1000.0, 1000.0), spacing_um)]
    z, y, x = np.indices(shape)
    r = np.hypot((y + 0.5) * spacing_um[1] - 500.0, (x + 0.5) * spacing_um[2] - 500.0)
    return ((r <= outer_um) & (r > outer_um - wall_um)).astype(np.uint8) * 255


@pytest.mark.parametrize("spacing", [(10.0, 10.0, 10.0), (25.0, 10.0, 10.0)])
def test_cortical_thickness_and_areas_of_a_tube(spacing):
    m = bi.analyze_ct(tube(100.0, spacing), voxel_size_um=spacing).measurements
    assert m["Ct.Th_um"] == pytest.approx(100.0, abs=5.0)
    assert m["Tt.Ar_mm2"] == pytest.approx(math.pi * 0.4 ** 2, rel=0.02)
    assert m["Ma.Ar_mm2"] == pytest.approx(math.pi * 0.3 ** 2, rel=0.03)
    assert m["Ct.Ar_mm2"] == pytest.approx(math.pi * (0.4 ** 2 - 0.3 ** 2), rel=0.03)
    assert m["Ct.Perf.N"] == 0 and m["lesion_class"] == "none"


@pytest.mark.parametrize("width_px", [2, 6])
def test_a_drilled_hole_is_one_perforation_of_exact_volume(width_px):
    intact = tube(100.0, (10.0,) * 3) > 0
    drilled = intact.copy()
    centre = intact.shape[1] // 2
    channel = (slice(8, 8 + width_px), slice(centre - width_px // 2, centre - width_px // 2 + width_px), slice(0, 40))
    drilled[channel] = False  # through the wall on the -x side, from outside into the marrow
    removed_mm3 = (intact & ~drilled).sum() * 1e-6
    for reference in (intact, None):
        result = bi.analyze_ct(drilled.astype(np.uint8) * 255, voxel_size_um=10.0, reference=reference,
                               min_lesion_volume_mm3=1e-5)
        assert result.measurements["Ct.Perf.N"] == 1, result.mode
    assert result.mode == "no-reference"
    m = bi.analyze_ct(drilled, voxel_size_um=10.0, reference=intact, min_lesion_volume_mm3=1e-5).measurements
    assert m["Lytic.V_mm3"] == pytest.approx(removed_mm3) and m["Lytic.Ct.V_mm3"] == pytest.approx(removed_mm3)
    assert m["Blastic.V_mm3"] == 0.0


def test_thin_cortex_reads_thin():
    m = bi.analyze_ct(tube(60.0, (10.0,) * 3), voxel_size_um=10.0).measurements
    assert m["Ct.Th_um"] == pytest.approx(60.0, abs=5.0)


def test_a_slice_reports_areas(mixed):
    z = int(round(mixed.truth["lesion_layout"][1]["centre"][0] / VOXEL_UM))  # the through lesion
    result = bi.analyze_ct(mixed.image.data[z], voxel_size_um=VOXEL_UM,
                           reference=mixed.truth["reference"].data[z])
    m = result.measurements
    assert result.lesions.shape == result.bone.shape == mixed.image.shape[1:]
    assert math.isnan(m["Lytic.V_mm3"]) and "2-D" in result.notes["Lytic.V_mm3"]
    pixel_mm2 = VOXEL_UM ** 2 / 1e6
    true_lytic = mixed.truth["lytic"][z].sum() * pixel_mm2
    assert m["Lytic.Ar_mm2"] == pytest.approx(true_lytic, rel=0.15)
    assert m["Lytic.Ar/Tt.Ar_pct"] == pytest.approx(100 * m["Lytic.Ar_mm2"] / m["Ref.Tt.Ar_mm2"])
    assert m["Ct.Perf.N"] == 2  # the front and back walls of the through lesion


def test_subvoxel_thickness_is_an_option_and_recorded(mixed):
    z = mixed.image.shape[0] // 2
    default, fine = (bi.analyze_ct(mixed.image.data[z], voxel_size_um=VOXEL_UM, subvoxel=s) for s in (False, True))
    assert "3x finer grid" in fine.provenance["bone_morphometry"]["thickness"]
    assert "3x finer grid" not in default.provenance["bone_morphometry"]["thickness"]
    # the same trabeculae: sphere centres between voxel centres read them a little thicker
    assert default.measurements["Tb.Th_um"] < fine.measurements["Tb.Th_um"] < default.measurements["Tb.Th_um"] + VOXEL_UM
    with pytest.raises(bi.BoneImgError, match="subvoxel must be True or False"):
        bi.analyze_ct(mixed.image, subvoxel="yes")


def test_reference_of_another_shape_or_spacing_is_refused(mixed):
    expected = re.escape(f"reference has shape (10, 10, 10) but the image has shape {mixed.image.shape}")
    with pytest.raises(bi.BoneImgError, match=expected):
        bi.analyze_ct(mixed.image, reference=np.zeros((10, 10, 10)))
    other = bi.Image(mixed.truth["reference"].data, "zyx", (10.0, 10.0, 10.0), "ct")
    with pytest.raises(bi.BoneImgError, match="voxel size"):
        bi.analyze_ct(mixed.image, reference=other)


def test_missing_voxel_size_colour_and_unknown_parameters_are_refused(mixed):
    with pytest.raises(bi.BoneImgError, match="pixel size is unknown"):
        bi.analyze_ct(mixed.image.data)
    with pytest.raises(bi.BoneImgError, match="grey-value volume"):
        bi.analyze_ct(np.zeros((20, 20, 3), np.uint8), voxel_size_um=10.0)
    with pytest.raises(bi.BoneImgError, match="unknown analyze_ct parameter"):
        bi.analyze_ct(mixed.image, threshhold=100)
    with pytest.raises(bi.BoneImgError, match="min_lesion_volume_mm3"):
        bi.analyze_ct(mixed.image, min_lesion_volume_mm3=-1)


def test_empty_and_all_bone_volumes_give_nan_with_reasons():
    empty = bi.analyze_ct(np.zeros((6, 30, 30), np.uint8), voxel_size_um=10.0)
    m = empty.measurements
    assert not empty.bone.any() and m["lesion_class"] == "none"
    for key in ("Lytic.V/Tt.V_pct", "Ct.Th_um", "BV/TV_pct"):
        assert math.isnan(m[key]) and empty.notes[key], key
    assert "single grey value" in empty.notes["segmentation"][0]
    solid = bi.analyze_ct(np.full((6, 30, 30), 200, np.uint8), voxel_size_um=10.0, threshold=100)
    m = solid.measurements
    assert solid.bone.all() and m["lesion_class"] == "none"
    for key in ("Lytic.V_mm3", "Blastic.V_mm3", "Ct.Th_um", "Tb.Th_um"):
        assert math.isnan(m[key]) and solid.notes[key], key
    assert "every voxel is bone" in solid.notes["Lytic.V_mm3"]


def test_too_large_a_volume_is_refused_before_loading(monkeypatch, mixed):
    monkeypatch.setattr(_inputs, "_available_memory_bytes", lambda: 10**6)
    with pytest.raises(bi.BoneImgError, match="analyze_ct of a volume of shape .* needs about"):
        bi.analyze_ct(mixed.image)


def test_class_rule_and_threshold_from_controls():
    assert lesion_class(3.0, 0.2, 1.0) == "osteolytic"
    assert lesion_class(0.5, 2.0, 1.0) == "osteoblastic"
    assert lesion_class(3.0, 2.0, 1.0) == "mixed"
    assert lesion_class(0.5, float("nan"), 1.0) == "none"
    assert class_threshold_pct([0.1, 0.3, 0.2]) == 1.0
    assert class_threshold_pct([1.0, 2.0, 3.0], k=2.0) == pytest.approx(4.0)
    with pytest.raises(bi.BoneImgError):
        class_threshold_pct([1.0])


def test_real_trabecular_bone_runs_without_reference_and_claims_no_lesion(shared_data):
    image = bi.load(shared_data / "microct" / "shrew_trabecular_4.1um.nrrd")
    result = bi.analyze_ct(image)
    m = result.measurements
    assert result.mode == "no-reference" and result.method == "binary input"
    assert np.array_equal(result.bone, np.asarray(image.data) > 0)
    assert m["lesion_class"] == "none"
    assert m["Lytic.V_mm3"] == 0.0 and m["Blastic.V/Tt.V_pct"] < 1.0 and m["Ct.Perf.N"] == 0
    assert math.isnan(m["Ct.Th_um"]) and "no cortical shell" in result.notes["Ct.Th_um"]
    # a cube of trabecular bone: the marrow compartment is (nearly) all of it
    assert 25 < m["BV/TV_pct"] < 35 and 30 < m["Tb.Th_um"] < 90 and 80 < m["Tb.Sp_um"] < 250
