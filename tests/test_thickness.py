"""Local thickness: exact against brute force, analytic shapes, anisotropy, the unknown outside."""

import numpy as np
import pytest

from boneimg import BoneImgError
from boneimg.ct.thickness import SUBVOXEL_FACTOR, _flat_faces, local_thickness
from boneimg.sample_data.phantoms import ball, rod


def brute_force(inside, stops, weights, unit):
    """The definition over all pairs, in exact integers: ``2 max{r(c) : |p - c| < r(c)}`` with
    r(c) the distance from c to the nearest of `stops` (integer grid points); ``|v|² =
    sum(weights * v²)`` in integer `weights`, and a length of 1 in those units is `unit` µm."""
    points = np.argwhere(inside)
    w = np.asarray(weights, dtype=np.int64)
    r2 = (((points[:, None, :] - stops[None, :, :]) ** 2) * w).sum(-1).min(axis=1)
    d2 = (((points[:, None, :] - points[None, :, :]) ** 2) * w).sum(-1)
    covered = d2 < r2[None, :]  # [p, c]
    out = np.full(inside.shape, np.nan)
    out[inside] = 2 * unit * np.sqrt(np.where(covered, r2[None, :], 0).max(axis=1))
    return out


def blobs(shape, seed, fraction=0.45):
    """Random structure with a margin of the other phase, so the unknown outside never matters."""
    rng = np.random.default_rng(seed)
    from scipy import ndimage as ndi

    field = ndi.gaussian_filter(rng.standard_normal(shape), 1.2)
    structure = field > np.quantile(field, 1 - fraction)
    margin = np.zeros(shape, dtype=bool)
    margin[tuple(slice(1, -1) for _ in shape)] = True
    return structure & margin


@pytest.mark.parametrize(
    "shape, spacing, seed",
    # spacings whose squares are whole hundredths, so the reference is exact in integers
    [((14, 15, 13), (1.0, 1.0, 1.0), 0), ((14, 15, 13), (2.0, 1.0, 1.0), 1),
     ((12, 13, 14), (1.3, 1.0, 0.7), 2), ((40, 37), (1.0, 1.0), 3), ((30, 33), (0.5, 1.5), 4)],
)
@pytest.mark.parametrize("phase", ["structure", "complement"])
def test_matches_brute_force(shape, spacing, seed, phase):
    structure = blobs(shape, seed)
    if phase == "complement":  # the other phase, with the same margin rule
        inner = np.zeros(shape, dtype=bool)
        inner[tuple(slice(1, -1) for _ in shape)] = True
        structure = ~structure & inner
    weights = np.rint(np.square(spacing) * 100).astype(int)
    expected = brute_force(structure, np.argwhere(~structure), weights, 0.1)
    got = local_thickness(structure, spacing)
    np.testing.assert_allclose(got[structure], expected[structure], rtol=1e-6)
    assert np.isnan(got[~structure]).all()


def test_subvoxel_matches_brute_force_2d():
    structure = blobs((16, 17), 6)
    # the definition below holds where no face is flat over 9 voxels (see the plate tests)
    assert not any(cubes.any() for *_, cubes in _flat_faces(structure, ~structure, np.ones_like(structure)))
    f = SUBVOXEL_FACTOR
    fine = np.repeat(np.repeat(structure, f, 0), f, 1)
    # sphere centres on the fine grid; spheres stop at the voxel centres of the other phase
    stops = np.argwhere(~structure) * f + f // 2
    per_sub = brute_force(fine, stops, (1, 1), 1.0 / f)
    expected = per_sub[f // 2::f, f // 2::f]  # each voxel reads the spheres containing its centre
    got = local_thickness(structure, 1.0, subvoxel=True)
    np.testing.assert_allclose(got[structure], expected[structure], rtol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("t", range(1, 9))
def test_subvoxel_plate_reads_its_width(t, ndim):
    # a plate's faces are flat and axis-aligned: spheres stop at the faces, not half a voxel
    # beyond them at the other phase's voxel centres (which read t + 1)
    plate = np.zeros((t + 6,) + (18,) * (ndim - 1), dtype=bool)
    plate[3:3 + t] = True
    thickness = local_thickness(plate, 1.0, subvoxel=True)[plate]
    expected = t if t % 2 == 0 else t + 1 / SUBVOXEL_FACTOR  # odd: the fine centre on the mid-plane
    np.testing.assert_allclose(thickness, expected, rtol=1e-6)


def test_subvoxel_face_flat_over_less_than_the_square_keeps_voxel_centres():
    # a staircase with steps 6 voxels wide, framed by the other phase: no face is flat over
    # 9 x 9, so spheres stop at the other phase's voxel centres
    stairs = np.zeros((16, 26, 24), dtype=bool)
    for k in range(4):
        stairs[4 + k:10 + k, 1 + 6 * k:7 + 6 * k, 1:-1] = True
    assert not any(cubes.any() for *_, cubes in _flat_faces(stairs, ~stairs, np.ones_like(stairs)))
    # 6 voxels thick (a flat plate of 6 reads 6): the best fine centre lies 1/3 voxel off the
    # mid-plane and off the other phase's centres in both in-plane axes, (10/3, 1/3, 1/3) away
    assert local_thickness(stairs, 1.0, subvoxel=True)[8, 10, 12] == pytest.approx(2 * np.sqrt(102) / 3)


@pytest.mark.parametrize("t", range(1, 9))
def test_plate_reads_t_even_t_plus_one_odd_everywhere(t):
    # the plate crosses the array's edges (unknown outside) perpendicularly on four sides
    plate = np.zeros((t + 6, 18, 18), dtype=bool)
    plate[3:3 + t] = True
    thickness = local_thickness(plate, 10.0)[plate]
    expected = 10.0 * (t if t % 2 == 0 else t + 1)
    np.testing.assert_array_equal(thickness, np.float32(expected))


def test_anisotropic_plate_matches_isotropic_in_um():
    thin = np.zeros((10, 12, 12), dtype=bool)
    thin[3:7] = True  # 4 voxels of 2 µm
    thick = np.zeros((20, 12, 12), dtype=bool)
    thick[6:14] = True  # 8 voxels of 1 µm
    a = local_thickness(thin, (2.0, 1.0, 1.0))[thin]
    b = local_thickness(thick, 1.0)[thick]
    assert np.all(a == 8.0) and np.all(b == 8.0)
    # the same plate standing along a 1 µm axis of that grid
    side = np.zeros((6, 12, 20), dtype=bool)
    side[..., 6:14] = True
    assert np.all(local_thickness(side, (2.0, 1.0, 1.0))[side] == 8.0)


@pytest.mark.parametrize("d", [4.3, 7.6, 11.2])
def test_rod_diameter(d):
    shape = rod(d, int(d * 10))
    default = np.nanmean(local_thickness(shape, 1.0)[shape])
    fine = np.nanmean(local_thickness(shape, 1.0, subvoxel=True)[shape])
    assert abs(default - d) <= 1.0
    assert abs(fine - d) <= 0.5


@pytest.mark.parametrize("d", [5.5, 9.3])
def test_sphere_diameter(d):
    shape = ball(d, int(d * 10))
    default = np.nanmean(local_thickness(shape, 1.0)[shape])
    fine = np.nanmean(local_thickness(shape, 1.0, subvoxel=True)[shape])
    # sphere centres snapped to voxel centres lose up to a voxel and a half by default
    assert -1.5 <= default - d <= 0.0
    assert abs(fine - d) <= 0.5


def test_plate_along_the_edge_is_not_doubled():
    # a plate lying on the array's face: outside is unknown, not more plate
    plate = np.zeros((12, 16, 16), dtype=bool)
    plate[:4] = True
    assert np.all(local_thickness(plate, 1.0)[plate] == 4.0)
    # a gap (marrow) lying on the face reads its width too
    marrow = np.zeros((12, 16, 16), dtype=bool)
    marrow[:5] = True
    assert np.all(local_thickness(marrow, 1.0)[marrow] == 6.0)


def test_roi_cut_reads_visible_width_parallel_and_full_width_perpendicular():
    plate = np.zeros((20, 16, 16), dtype=bool)
    plate[4:12] = True  # 8 voxels
    roi = np.zeros_like(plate)
    roi[8:] = True  # cuts the plate in half along its faces: 4 visible voxels
    assert np.all(local_thickness(plate, 1.0, roi=roi)[plate & roi] == 4.0)
    # the region's edge crossing the plate: full thickness right up to the edge
    across = np.zeros_like(plate)
    across[:, 5:, :] = True
    values = local_thickness(plate, 1.0, roi=across)[plate & across]
    assert np.all(values == 8.0)
    # and outside the region nothing is measured
    assert np.isnan(local_thickness(plate, 1.0, roi=across)[:, :5]).all()


def test_rod_crossing_roi_edge_keeps_its_thickness_at_the_edge():
    shape = rod(7.6, 7)
    roi = np.zeros_like(shape)
    roi[5:] = True  # the region's edge cuts the rod across its axis
    full = local_thickness(shape, 1.0)
    cut = local_thickness(shape, 1.0, roi=roi)
    # the rod is 21 voxels long: far from both cuts the values agree, and the voxels at the
    # edge read what the same voxels read 5 voxels further from it
    np.testing.assert_array_equal(cut[5][shape[5]], full[10][shape[10]])


def test_empty_and_full_structure():
    empty = np.zeros((6, 7, 8), dtype=bool)
    assert np.isnan(local_thickness(empty, 1.0)).all()
    full = np.ones((6, 7, 8), dtype=bool)
    # nothing but the unknown bounds a sphere: the largest that fits the array, 6 voxels
    assert np.all(local_thickness(full, 1.0) == 6.0)


@pytest.mark.parametrize(
    "mask, size, roi, message",
    [
        (np.zeros((4, 4, 4)), 0.0, None, "positive"),
        (np.zeros((4, 4, 4)), -2.0, None, "positive"),
        (np.zeros((4, 4, 4)), (1.0, 1.0), None, "one value per spatial axis"),
        (np.zeros((4, 4, 4)), None, None, "voxel_size_um is required"),
        (np.arange(64).reshape(4, 4, 4), 1.0, None, "binary"),
        (np.zeros(5), 1.0, None, "2-D or 3-D"),
        (np.zeros((4, 4, 4), dtype=bool), 1.0, np.ones((4, 4, 5), dtype=bool), "shape of the mask"),
        (np.zeros((4, 4, 4), dtype=bool), 1.0, np.full((4, 4, 4), 2.5), None),
    ],
)
def test_bad_input(mask, size, roi, message):
    if message is None:  # a constant non-zero roi is binary: accepted
        local_thickness(mask, size, roi=roi)
        return
    with pytest.raises(BoneImgError, match=message):
        local_thickness(mask, size, roi=roi)


def test_binary_numeric_masks_are_accepted():
    plate = np.zeros((10, 8, 8), dtype=np.uint8)
    plate[3:7] = 255
    np.testing.assert_array_equal(local_thickness(plate, 1.0), local_thickness(plate > 0, 1.0))


def test_reference_itself():
    # guard for the brute force: a 1 x 2 structure reads 2 voxels
    inside = np.zeros((3, 4), dtype=bool)
    inside[1, 1:3] = True
    assert np.array_equal(brute_force(inside, np.argwhere(~inside), (1, 1), 1.0)[inside], [2.0, 2.0])
    # weights scale lengths: 2 x sqrt(4) x 0.5 µm
    assert np.array_equal(brute_force(inside, np.argwhere(~inside), (4, 4), 0.5)[inside], [2.0, 2.0])


def test_thin_roi_on_thick_structure():
    # distances to the other phase need 16 bits, distances to the region's edge 8
    block = np.zeros((60, 20, 20), dtype=bool)
    block[8:52] = True  # 44 voxels thick
    roi = np.zeros_like(block)
    roi[20:30] = True  # 10 voxels of it, cut along its faces
    assert np.all(local_thickness(block, 1.0, roi=roi)[roi] == 10.0)
