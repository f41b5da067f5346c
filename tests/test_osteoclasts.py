"""Osteoclasts: whole TRAP-positive cells, their nuclei, bone contact in µm, min_nuclei."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import boneimg as bi
from boneimg.histology.osteoclasts import COLUMNS, find_osteoclasts, segment_cells, trap_threshold


def ellipse(shape, centre_um, axes_um, px, angle=0.0):
    yy, xx = (np.indices(shape) + 0.5) * px
    dy, dx = yy - centre_um[0], xx - centre_um[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / axes_um[0]) ** 2 + (v / axes_um[1]) ** 2 <= 1


def cell_images(shape, px, cells, nuclei, *, blur_um=0.4):
    """TRAP and hematoxylin optical density: TRAP-filled cells whose nuclei hold hematoxylin instead."""
    trap = np.zeros(shape, np.float32)
    hema = np.full(shape, 0.03, np.float32)
    for mask in cells:
        trap[mask] = 0.6
    for mask in nuclei:
        trap[mask] = 0.1
        hema[mask] = 0.7
    sigma = blur_um / px
    return ndi.gaussian_filter(trap, sigma), ndi.gaussian_filter(hema, sigma)


@pytest.mark.parametrize("px", [0.25, 0.5])
def test_multinucleated_cell_is_one_object_with_its_nuclei(px):
    shape = (int(80 / px), int(100 / px))
    body = ellipse(shape, (40, 50), (30, 14), px)
    nuclei = [ellipse(shape, (40, x), (3.5, 3.0), px) for x in (30, 42, 54, 66)]
    trap, hema = cell_images(shape, px, [body], nuclei)
    found = find_osteoclasts(trap, px, hematoxylin=hema)
    assert len(found.table) == 1
    row = found.table.iloc[0]
    assert row["n_nuclei"] == 4
    assert row["area_um2"] == pytest.approx(np.pi * 30 * 14, rel=0.05)  # nuclei filled back in
    assert list(found.table.columns) == list(COLUMNS)


def test_nuclei_from_labels_without_hematoxylin():
    px = 0.5
    shape = (160, 200)
    body = ellipse(shape, (40, 50), (30, 14), px)
    nuclei = [ellipse(shape, (40, x), (3.5, 3.0), px) for x in (35, 50, 65)]
    trap, _ = cell_images(shape, px, [body], nuclei)
    labels = np.zeros(shape, np.int32)
    for i, mask in enumerate(nuclei, 1):
        labels[mask] = i
    labels[ellipse(shape, (70, 20), (3, 3), px)] = 9  # a marrow nucleus outside the cell
    found = find_osteoclasts(trap, px, nuclei_labels=labels)
    assert found.table["n_nuclei"].tolist() == [3]


def test_touching_cells_split_at_the_neck_only():
    px = 0.5
    shape = (120, 240)
    left = ellipse(shape, (30, 40), (24, 12), px)
    right = ellipse(shape, (30, 82), (22, 12), px)  # tips overlap: a narrow neck
    trap, hema = cell_images(shape, px, [left, right], [])
    assert len(find_osteoclasts(trap, px).table) == 2
    assert len(find_osteoclasts(trap, px, split_um=0).table) == 1
    long_cell = ellipse(shape, (30, 60), (50, 10), px)  # long and even: never split
    trap, _ = cell_images(shape, px, [long_cell], [])
    assert len(find_osteoclasts(trap, px).table) == 1


@pytest.mark.parametrize("px", [0.25, 0.5])
def test_bone_contact_tolerance_is_in_micrometres(px):
    shape = (int(60 / px), int(120 / px))
    yy = (np.indices(shape)[0] + 0.5) * px
    bone = yy >= 40.0  # bone surface at 40 µm
    touching = ellipse(shape, (40, 30), (15, 8), px) & ~bone
    gap_2um = ellipse(shape, (30, 80), (15, 8), px)  # lowest edge at 38 µm: 2 µm from bone
    nucleus = [ellipse(shape, (36, 30), (3, 2.5), px), ellipse(shape, (30, 80), (3, 2.5), px)]
    trap, hema = cell_images(shape, px, [touching, gap_2um], nucleus)
    table = find_osteoclasts(trap, px, bone=bone, hematoxylin=hema, contact_um=3.0).table.sort_values("x")
    assert table["on_bone"].tolist() == [True, True]
    assert table["bone_gap_um"].iloc[0] < 0.6 and table["bone_gap_um"].iloc[1] == pytest.approx(2.0, abs=0.7)
    strict = find_osteoclasts(trap, px, bone=bone, hematoxylin=hema, contact_um=1.0).table.sort_values("x")
    assert strict["on_bone"].tolist() == [True, False]
    assert strict["counted"].tolist() == [True, False]


def test_min_nuclei_and_culture():
    px = 0.5
    shape = (100, 240)
    yy = (np.indices(shape)[0] + 0.5) * px
    bone = yy >= 35.0  # both cells rest on the surface
    cells = [ellipse(shape, (25, 30), (20, 10), px) & ~bone, ellipse(shape, (25, 90), (20, 10), px) & ~bone]
    nuclei = [ellipse(shape, (25, x), (3, 2.5), px) for x in (30, 82, 98)]  # one, then two nuclei
    trap, hema = cell_images(shape, px, cells, nuclei)
    found = find_osteoclasts(trap, px, bone=bone, hematoxylin=hema)
    assert found.table.sort_values("x")["n_nuclei"].tolist() == [1, 2]
    assert found.table["on_bone"].all()
    for min_nuclei, expected in ((1, 2), (2, 1), (3, 0)):
        assert find_osteoclasts(trap, px, bone=bone, hematoxylin=hema, min_nuclei=min_nuclei).count == expected
    off_bone = find_osteoclasts(trap, px, bone=np.roll(bone, 20, axis=0), hematoxylin=hema)
    assert off_bone.count == 0  # 10 µm from bone
    culture = find_osteoclasts(trap, px, hematoxylin=hema, culture=True, min_nuclei=2)
    assert culture.count == 1 and not culture.table["on_bone"].any()


def test_granules_below_min_area_are_not_cells():
    px = 0.5
    shape = (100, 100)
    granules = [ellipse(shape, (10 + 12 * i, 20), (2.5, 2.5), px) for i in range(3)]
    cell = ellipse(shape, (25, 35), (12, 7), px)
    trap, _ = cell_images(shape, px, granules + [cell], [])
    assert len(find_osteoclasts(trap, px, min_area_um2=50).table) == 1
    assert len(find_osteoclasts(trap, px, min_area_um2=5).table) == 4


def test_faint_and_strong_cells_keep_their_size():
    """Each cell's edge is at half its own staining: a faint cell is not shrunk by a strong one."""
    px = 0.5
    shape = (100, 200)
    strong, faint = ellipse(shape, (25, 25), (18, 9), px), ellipse(shape, (25, 75), (18, 9), px)
    trap = np.zeros(shape, np.float32)
    trap[strong], trap[faint] = 1.0, 0.3
    trap = ndi.gaussian_filter(trap, 0.8)
    areas = find_osteoclasts(trap, px).table.sort_values("x")["area_um2"].to_numpy()
    np.testing.assert_allclose(areas, np.pi * 18 * 9, rtol=0.06)


def test_no_trap_and_bad_parameters():
    empty = find_osteoclasts(np.zeros((50, 50), np.float32), 0.5)
    assert len(empty.table) == 0 and list(empty.table.columns) == list(COLUMNS) and empty.count == 0
    assert trap_threshold(np.full((50, 50), 0.11, np.float32)) == pytest.approx(0.2)
    with pytest.raises(bi.BoneImgError, match="min_nuclei"):
        find_osteoclasts(np.zeros((5, 5)), 0.5, min_nuclei=-1)
    with pytest.raises(bi.BoneImgError, match="contact_um"):
        find_osteoclasts(np.zeros((5, 5)), 0.5, contact_um=-2)
    with pytest.raises(bi.BoneImgError, match="bone must have"):
        find_osteoclasts(np.zeros((5, 5)), 0.5, bone=np.zeros((4, 4), bool))


def test_segment_cells_gives_the_cells_of_find_osteoclasts():
    px, shape = 0.5, (120, 160)
    cells = [ellipse(shape, (30, 25), (12, 8), px), ellipse(shape, (30, 55), (10, 10), px)]
    nuclei = [ellipse(shape, (30, 22), (2.5, 2.5), px), ellipse(shape, (30, 55), (3, 3), px)]
    trap, hema = cell_images(shape, px, cells, nuclei)
    found = find_osteoclasts(trap, px, hematoxylin=hema)
    labels, cell_nuclei, parameters = segment_cells(trap, px, hematoxylin=hema)
    assert len(found.table) == 2
    np.testing.assert_array_equal(labels, found.labels)
    np.testing.assert_array_equal(cell_nuclei, found.nuclei)
    assert parameters.items() <= found.parameters.items()
