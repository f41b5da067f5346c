"""bone_morphometry: volumes, surfaces, thickness/separation, connectivity, edge cases, real data."""

import math

import numpy as np
import pytest

import boneimg as bi
from boneimg import BoneImgError
from boneimg.ct.morphometry import euler_characteristics
from boneimg.ct.thickness import local_thickness

from test_thickness import brute_force

KEYS_3D = ("TV_mm3", "BV_mm3", "BS_mm2", "BV/TV_pct", "BS/BV_per_mm", "Tb.Th_um", "Tb.Th.SD_um",
           "Tb.Sp_um", "Tb.Sp.SD_um", "Tb.Sp.max_um", "Tb.N_per_mm", "Conn.D_per_mm3")


def plates(period=10, thickness=4, n=40):
    """Parallel plates across the whole volume, perpendicular to axis 0."""
    bone = np.zeros((n, 24, 24), dtype=bool)
    for start in range(3, n - thickness, period):
        bone[start:start + thickness] = True
    return bone


def rod_lattice(cells, period=6, width=2):
    """Rods along the three axes, crossing at nodes; the box cuts every rod halfway between nodes."""
    on = (np.arange(cells * period) - 2) % period < width
    z, y, x = np.meshgrid(on, on, on, indexing="ij")
    return (z & y) | (y & x) | (z & x)


def test_parallel_plates_exact():
    bone = plates()[1:-1]  # plates of 4 voxels, gaps of 6; the array cuts a 2-voxel gap at each end
    result = bi.bone_morphometry(bone, 5.0)
    assert set(KEYS_3D) <= set(result)
    n = bone.size
    assert result["TV_mm3"] == pytest.approx(n * 125e-9, rel=1e-12)
    assert result["BV/TV_pct"] == pytest.approx(100 * bone.sum() / n, rel=1e-12)
    assert result["Tb.Th_um"] == pytest.approx(20.0) and result["Tb.Th.SD_um"] == pytest.approx(0.0)
    # the gaps are 6 voxels; the two cut at the ends read their visible 2 voxels, not 4
    marrow = local_thickness(~bone, 5.0)[~bone]
    assert sorted(set(marrow.tolist())) == [10.0, 30.0]
    assert result["Tb.Sp_um"] == pytest.approx(marrow.mean(dtype=np.float64))
    assert result["Tb.Sp.max_um"] == 30.0
    assert result["Tb.N_per_mm"] == pytest.approx(1e3 / (result["Tb.Th_um"] + result["Tb.Sp_um"]))
    # flat faces: 2 per plate, 24 x 24 voxels of 5 µm, and no surface where the array cuts
    faces = 2 * (bone.any(axis=(1, 2)).sum() // 4) * (24 * 5e-3) ** 2
    assert result["BS_mm2"] == pytest.approx(faces, rel=1e-9)


def test_separation_of_gaps_fully_inside():
    bone = plates()  # gaps of 6 between plates of 4 (the ends of the array are marrow cut too)
    roi = np.zeros_like(bone)
    roi[3:33] = True  # three whole plates and the two whole gaps between them
    result = bi.bone_morphometry(bone, 1.0, roi=roi)
    assert result["Tb.Th_um"] == pytest.approx(4.0)
    assert result["Tb.Sp_um"] == pytest.approx(6.0)
    assert result["Tb.N_per_mm"] == pytest.approx(100.0)
    assert result["TV_mm3"] == pytest.approx(roi.sum() * 1e-9)


@pytest.mark.parametrize("radius", [8.3, 12.7])
def test_sphere_surface(radius):
    n = 32
    z, y, x = np.mgrid[:n, :n, :n]
    ball = (z - 15.6) ** 2 + (y - 15.4) ** 2 + (x - 15.7) ** 2 < radius ** 2
    result = bi.bone_morphometry(ball, 2.0)
    exact = 4 * math.pi * (2e-3 * radius) ** 2
    # binary marching cubes reads curved surfaces 5-9 % high (documented)
    assert 1.0 < result["BS_mm2"] / exact < 1.10
    assert result["BV_mm3"] == pytest.approx(ball.sum() * 8e-9)


def test_cube_surface():
    cube = np.zeros((30, 30, 30), dtype=bool)
    cube[5:25, 5:25, 5:25] = True
    result = bi.bone_morphometry(cube, 1.0)
    assert result["BS_mm2"] / (6 * 20 * 20 * 1e-6) == pytest.approx(1.0, abs=0.04)
    assert result["BS/BV_per_mm"] == pytest.approx(result["BS_mm2"] / (8000e-9))


@pytest.mark.parametrize("cells", [1, 2, 3])
def test_euler_of_rod_lattice(cells):
    bone = rod_lattice(cells)
    chi, delta = euler_characteristics(bone, np.ones_like(bone))
    # k^3 nodes, 3k^2(k-1) whole rods, stubs cut at the faces: χ = -2k^3 + 3k^2; the
    # faces cut 6k^2 rod sections, χ(faces) = k^2 each: Δχ = χ - 3k^2 = -2k^3 (2 loops per cell)
    assert chi == -2 * cells**3 + 3 * cells**2
    assert delta == -2 * cells**3
    from skimage.measure import euler_number
    assert euler_number(bone, connectivity=3) == chi
    result = bi.bone_morphometry(bone, 10.0)
    assert result["Conn.D_per_mm3"] == pytest.approx((1 + 2 * cells**3) / result["TV_mm3"])
    assert result["method"]["euler_characteristic"] == chi
    assert result["method"]["euler_characteristic_corrected"] == delta


def test_euler_correction_for_an_roi():
    # the same lattice seen through a box ROI inside a bigger array: the ROI's cut is corrected
    bone = rod_lattice(3)
    roi = np.zeros_like(bone)
    roi[6:12, 6:12, 6:12] = True  # one cell: one node and three rods cut at both ends
    chi, delta = euler_characteristics(bone & roi, roi)
    assert (chi, delta) == (1.0, -2.0)


def test_empty_roi_no_bone_all_bone():
    bone = plates()
    empty = bi.bone_morphometry(bone, 1.0, roi=np.zeros_like(bone))
    assert empty["TV_mm3"] == 0.0 and math.isnan(empty["BV/TV_pct"]) and math.isnan(empty["Tb.Th_um"])
    assert "empty" in empty["undefined"]["Tb.Th_um"]
    none = bi.bone_morphometry(np.zeros((8, 9, 10), dtype=bool), 1.0)
    assert none["BV/TV_pct"] == 0.0 and none["BS_mm2"] == 0.0
    for key in ("BS/BV_per_mm", "Tb.Th_um", "Tb.Sp_um", "Tb.N_per_mm", "Conn.D_per_mm3"):
        assert math.isnan(none[key]) and "no bone" in none["undefined"][key]
    full = bi.bone_morphometry(np.ones((8, 9, 10), dtype=np.uint8), 1.0)
    assert full["BV/TV_pct"] == 100.0 and full["BS_mm2"] == 0.0 and full["BS/BV_per_mm"] == 0.0
    for key in ("Tb.Th_um", "Tb.Sp_um", "Tb.Sp.max_um", "Tb.N_per_mm", "Conn.D_per_mm3"):
        assert math.isnan(full[key]) and "no marrow" in full["undefined"][key]


def test_2d_section():
    yy, xx = np.mgrid[:70, :70]
    disc = (yy - 34.6) ** 2 + (xx - 35.2) ** 2 < 22.3 ** 2
    result = bi.bone_morphometry(disc, 1.5)
    assert "Conn.D_per_mm3" not in result and "TV_mm3" not in result
    assert result["TV_mm2"] == pytest.approx(70 * 70 * 2.25e-6)
    assert result["BV/TV_pct"] == pytest.approx(100 * disc.mean())
    # Cauchy-Crofton perimeter of a disc: unbiased within 2 %
    assert result["BS_mm"] / (2 * math.pi * 22.3 * 1.5e-3) == pytest.approx(1.0, abs=0.02)
    # 2-D thickness uses discs: a band of 5 pixels reads 6 (odd), 4 reads 4
    band = np.zeros((30, 40), dtype=bool)
    band[10:14] = True
    assert bi.bone_morphometry(band, 2.0)["Tb.Th_um"] == pytest.approx(8.0)


def test_anisotropic_voxels_in_um():
    iso = plates(period=10, thickness=4)
    aniso = iso[::2]  # the same plates sampled at 2 µm along axis 0: 2 voxels thick, 3 gap
    a = bi.bone_morphometry(aniso, (2.0, 1.0, 1.0))
    b = bi.bone_morphometry(iso, 1.0)
    assert a["Tb.Th_um"] == b["Tb.Th_um"] == pytest.approx(4.0)
    assert a["BV/TV_pct"] == pytest.approx(b["BV/TV_pct"], abs=1.0)
    assert a["method"]["voxel_size_um"] == (2.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "mask, size, roi, message",
    [
        (np.full((4, 4, 4), 7) * np.eye(4)[None], 1.0, None, None),  # 0/7: binary
        (np.arange(64).reshape(4, 4, 4) % 3, 1.0, None, "binary"),
        (np.zeros((4, 4, 4), dtype=bool), 0.0, None, "positive"),
        (np.zeros((4, 4, 4), dtype=bool), (1.0, -1.0, 1.0), None, "positive"),
        (np.zeros((4, 4, 4), dtype=bool), 1.0, np.ones((4, 4), dtype=bool), "shape of the mask"),
        (np.zeros((4, 4, 4), dtype=bool), float("nan"), None, "positive and finite"),
        (np.array([[[0.5, 0.2]]]), 1.0, None, "binary"),
    ],
)
def test_bad_input(mask, size, roi, message):
    if message is None:
        assert bi.bone_morphometry(mask, size)["BV/TV_pct"] == pytest.approx(25.0)
        return
    with pytest.raises(BoneImgError, match=message):
        bi.bone_morphometry(mask, size, roi=roi)


def test_too_large_for_memory_says_what_is_needed(monkeypatch):
    from boneimg.ct import _inputs

    monkeypatch.setattr(_inputs, "_available_memory_bytes", lambda: 10**6)
    with pytest.raises(BoneImgError, match=r"needs about .* GB of memory but about 0.0 GB is available"):
        bi.bone_morphometry(np.zeros((50, 50, 50), dtype=bool), 1.0)


SHREW = "microct/shrew_trabecular_4.1um.nrrd"


@pytest.fixture(scope="module")
def shrew(request):
    from conftest import SHARED_DATA

    path = SHARED_DATA / SHREW
    if not path.exists():
        pytest.skip(f"{path} is missing")
    image = bi.load(path)
    return np.asarray(image.data) > 0, image.spacing_um


def test_shrew_thickness_is_exact_on_real_trabeculae(shrew):
    # an independent check on real geometry: a crop, embedded in one voxel of marrow so that
    # the unknown outside plays no part, against the all-pairs definition
    bone, spacing = shrew
    crop = np.zeros((22, 22, 22), dtype=bool)
    crop[1:-1, 1:-1, 1:-1] = bone[40:60, 40:60, 40:60]
    weights = np.rint(np.square(spacing) / spacing[0] ** 2).astype(int)
    assert list(weights) == [1, 1, 1]
    expected = brute_force(crop, np.argwhere(~crop), (1, 1, 1), spacing[0])
    got = local_thickness(crop, spacing)
    np.testing.assert_allclose(got[crop], expected[crop], rtol=1e-5)


def test_shrew_morphometry_is_plausible(shrew):
    bone, spacing = shrew
    result = bi.bone_morphometry(bone, spacing)
    assert bone.shape == (115, 114, 114)
    assert result["TV_mm3"] == pytest.approx(bone.size * math.prod(spacing) * 1e-9)
    # wide sanity bounds for trabecular bone of a shrew at 4.1 µm (measured: 29.3 %, 57 µm,
    # 146 µm, 4.9 /mm, 225 /mm³); the exactness of the thickness is checked above
    assert 20 < result["BV/TV_pct"] < 40
    assert 8 * 4.1 < result["Tb.Th_um"] < 20 * 4.1
    assert result["Tb.Th_um"] < result["Tb.Sp_um"] < result["Tb.Sp.max_um"]
    assert 2 < result["Tb.N_per_mm"] < 10
    assert result["Conn.D_per_mm3"] > 0
    assert not result["undefined"]
