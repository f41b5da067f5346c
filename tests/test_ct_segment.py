"""Bone segmentation and density calibration (boneimg.ct.segment)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import boneimg as bi
from boneimg.ct import _inputs, segment
from boneimg.ct.segment import calibrate_density, rod_grey_values, segment_bone


def two_phase(shape=(12, 40, 40), low=40.0, high=200.0, noise=4.0, seed=0):
    """A ball of `high` in `low`, blurred and noisy; returns (grey, true mask)."""
    z, y, x = np.indices(shape)
    centre = [(s - 1) / 2 for s in shape]
    inside = ((z - centre[0]) / 5) ** 2 + ((y - centre[1]) / 14) ** 2 + ((x - centre[2]) / 14) ** 2 <= 1
    grey = ndi.gaussian_filter(np.where(inside, high, low), 0.8)
    return grey + np.random.default_rng(seed).normal(0, noise, shape), inside


def test_iso50_threshold_is_recorded_halfway_between_the_peaks():
    grey, truth = two_phase()
    seg = segment_bone(grey.astype(np.float32), voxel_size_um=10.0)
    assert seg.method == "iso50"
    assert seg.threshold == pytest.approx(120.0, abs=6.0)
    assert seg.smooth_sigma_um == pytest.approx(5.0)
    assert (seg.bone ^ truth).sum() < 0.03 * truth.sum()


def test_padding_outside_the_field_of_view_does_not_move_the_threshold():
    grey, truth = two_phase()
    padded = np.pad(grey, ((0, 0), (30, 30), (30, 30)), constant_values=-1024.0)
    seg = segment_bone(padded.astype(np.float32), voxel_size_um=10.0)
    assert seg.threshold == pytest.approx(120.0, abs=6.0)
    assert (seg.bone[:, 30:-30, 30:-30] ^ truth).sum() < 0.03 * truth.sum()


def test_user_and_otsu_thresholds_are_recorded():
    grey, _ = two_phase()
    user = segment_bone(grey, voxel_size_um=10.0, threshold=150.0)
    assert (user.method, user.threshold) == ("user", 150.0)
    otsu = segment_bone(grey, voxel_size_um=10.0, method="otsu")
    assert otsu.method == "otsu" and 40 < otsu.threshold < 200


def test_binary_input_is_taken_as_segmented_and_constant_input_has_no_bone():
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[:, 3:7, 3:7] = 255
    seg = segment_bone(mask, voxel_size_um=5.0)
    assert seg.method == "binary input" and seg.threshold == 127.5
    np.testing.assert_array_equal(seg.bone, mask == 255)
    flat = segment_bone(np.full((4, 10, 10), 7, np.int16), voxel_size_um=5.0)
    assert not flat.bone.any() and np.isnan(flat.threshold) and "single grey value" in flat.notes[0]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32", "int16"])
def test_dtypes_give_the_same_bone(dtype):
    grey, truth = two_phase()
    scale = {"uint8": (1, 0), "uint16": (250, 0), "uint32": (1e6, 0), "float32": (0.01, 0),
             "int16": (20, -3000)}[dtype]
    data = grey * scale[0] + scale[1]
    if dtype != "float32":
        data = np.round(np.clip(data, *(np.iinfo(dtype).min, np.iinfo(dtype).max)))
    seg = segment_bone(data.astype(dtype), voxel_size_um=10.0)
    if dtype == "int16":
        assert data.min() < 0
    assert (seg.bone ^ truth).sum() < 0.03 * truth.sum()


def test_smoothing_sigma_is_physical_for_anisotropic_voxels(monkeypatch):
    grey, _ = two_phase()
    sigmas = []
    monkeypatch.setattr(segment.ndi, "gaussian_filter", lambda a, s: sigmas.append(s) or a)
    segment_bone(grey, voxel_size_um=(20.0, 10.0, 10.0), smooth_sigma_um=8.0)
    assert sigmas == [[0.4, 0.8, 0.8]]


def test_calibration_recovers_slope_and_intercept():
    grey = np.array([30.0, 90.0, 150.0, 210.0])
    density = 4.5 * grey - 120.0
    cal = calibrate_density(grey, density)
    assert cal.slope == pytest.approx(4.5) and cal.intercept == pytest.approx(-120.0)
    assert cal.r_squared == pytest.approx(1.0) and cal.n_rods == 4
    assert cal.to_grey(cal.to_density(77.0)) == pytest.approx(77.0)
    two = calibrate_density([50.0, 250.0], [0.0, 1000.0])
    assert (two.slope, two.intercept) == (pytest.approx(5.0), pytest.approx(-250.0))


def test_calibration_from_rod_masks_of_a_noisy_phantom():
    rng = np.random.default_rng(3)
    rods = np.zeros((6, 60, 60), np.int32)
    true_grey = (60.0, 120.0, 180.0)
    grey = rng.normal(10.0, 3.0, rods.shape)
    for label, (cx, value) in enumerate(zip((12, 30, 48), true_grey), start=1):
        disc = np.hypot(*np.mgrid[-30:30, -cx:60 - cx]) < 7
        rods[:, disc] = label
        grey[:, disc] = rng.normal(value, 3.0, (6, int(disc.sum())))
    values = rod_grey_values(grey, rods)
    np.testing.assert_allclose(values, true_grey, atol=0.5)
    cal = calibrate_density(values, [250.0, 750.0, 1250.0])
    assert cal.slope == pytest.approx(1000 / 120, rel=0.01)
    assert cal.intercept == pytest.approx(-250.0, abs=5.0)


@pytest.mark.parametrize("grey, density, message", [
    ([100.0], [500.0], "at least 2"),
    ([100.0, 200.0], [500.0], "give one density per rod"),
    ([100.0, 100.0], [0.0, 500.0], "same grey value"),
    ([100.0, 200.0], [800.0, 200.0], "falls as grey value rises"),
])
def test_bad_calibrations_are_refused(grey, density, message):
    with pytest.raises(bi.BoneImgError, match=message):
        calibrate_density(grey, density)


def test_density_threshold_needs_a_calibration_and_converts():
    grey, _ = two_phase()
    with pytest.raises(bi.BoneImgError, match="needs a density calibration"):
        segment_bone(grey, voxel_size_um=10.0, threshold_mg_cm3=400.0)
    cal = calibrate_density([40.0, 200.0], [0.0, 1600.0])
    seg = segment_bone(grey, voxel_size_um=10.0, threshold_mg_cm3=800.0, calibration=cal)
    assert seg.method == "density" and seg.threshold == pytest.approx(120.0)
    assert seg.threshold_mg_cm3 == 800.0


def test_uniform_phantom_bmd_equals_tmd_equals_its_density():
    volume = np.zeros((8, 50, 50), np.float32)
    volume[:, 10:40, 10:40] = 180.0
    cal = calibrate_density([0.0, 200.0], [-100.0, 1100.0])
    result = bi.analyze_ct(volume, voxel_size_um=10.0, calibration=cal, smooth_sigma_um=0)
    expected = float(cal.to_density(180.0))
    assert result.measurements["TMD_mgHA_cm3"] == pytest.approx(expected)
    assert result.measurements["BMD_mgHA_cm3"] == pytest.approx(expected)


def test_bmd_of_a_tube_counts_the_marrow():
    z, y, x = np.indices((10, 80, 80))
    r = np.hypot(y - 39.5, x - 39.5)
    bone, marrow = (r <= 30) & (r > 20), r <= 20
    volume = np.where(bone, 200.0, np.where(marrow, 50.0, 0.0)).astype(np.float32)
    cal = calibrate_density([0.0, 200.0], [0.0, 1200.0])
    result = bi.analyze_ct(volume, voxel_size_um=10.0, calibration=cal, smooth_sigma_um=0)
    m = result.measurements
    assert m["TMD_mgHA_cm3"] == pytest.approx(1200.0)
    expected_bmd = (bone.sum() * 1200.0 + marrow.sum() * 300.0) / (bone | marrow).sum()
    assert m["BMD_mgHA_cm3"] == pytest.approx(expected_bmd, rel=0.01)


def test_missing_voxel_size_and_bad_options_are_refused():
    grey, _ = two_phase()
    with pytest.raises(bi.BoneImgError, match="pixel size is unknown"):
        segment_bone(grey)
    with pytest.raises(bi.BoneImgError, match="method must be one of"):
        segment_bone(grey, voxel_size_um=10.0, method="triangle")
    with pytest.raises(bi.BoneImgError, match="smooth_sigma_um"):
        segment_bone(grey, voxel_size_um=10.0, smooth_sigma_um=-1.0)
    with pytest.raises(bi.BoneImgError, match="either threshold"):
        segment_bone(grey, voxel_size_um=10.0, threshold=1.0, threshold_mg_cm3=1.0)


def test_a_volume_too_large_for_memory_says_what_it_needs(monkeypatch):
    monkeypatch.setattr(_inputs, "_available_memory_bytes", lambda: 2 * 10**9)
    with pytest.raises(bi.BoneImgError, match=r"needs about 80\.0 GB .* about 2\.0 GB is available; crop"):
        _inputs.require_memory((1000, 1000, 1000), 80, what="analyze_ct")
    _inputs.require_memory((100, 100, 100), 80, what="analyze_ct")
