"""Perimeters and histomorphometry symbols against shapes with closed-form answers."""

import math

import numpy as np
import pandas as pd
import pytest

import boneimg as bi
from boneimg.histology.histomorphometry import SYMBOLS, outline, perimeter_um, section_measurements


def disk(radius_um, spacing_um, centre_offset=0.3):
    """Mask of a disk of `radius_um` on a grid of `spacing_um` (row, column), off the pixel grid."""
    sy, sx = spacing_um
    n_y, n_x = (int(2 * radius_um / s) + 12 for s in spacing_um)
    yy, xx = np.mgrid[:n_y, :n_x]
    y_um = (yy - n_y / 2 + centre_offset) * sy
    x_um = (xx - n_x / 2 + centre_offset) * sx
    return np.hypot(y_um, x_um) <= radius_um


@pytest.mark.parametrize("pixel_um", [0.25, 1.0])
@pytest.mark.parametrize("radius_um", [8.0, 40.0, 150.0])
def test_disk_perimeter_is_two_pi_r(pixel_um, radius_um):
    length = perimeter_um(disk(radius_um, (pixel_um, pixel_um)), pixel_um)
    assert length == pytest.approx(2 * math.pi * radius_um, rel=0.02)


def test_pixel_edge_count_would_overestimate():
    """The reason for sub-pixel tracing: counting pixel edges gives 4/π too much on a disk."""
    mask = disk(40.0, (0.5, 0.5))
    edges = (np.count_nonzero(np.diff(mask, axis=0)) + np.count_nonzero(np.diff(mask, axis=1))) * 0.5
    assert edges > 1.2 * 2 * math.pi * 40.0
    assert perimeter_um(mask, 0.5) < 1.02 * 2 * math.pi * 40.0


@pytest.mark.parametrize("angle_deg", [0, 30, 45])
def test_rotated_square_perimeter(angle_deg):
    yy, xx = np.mgrid[:300, :300] - 150.0
    a = math.radians(angle_deg)
    u, v = xx * math.cos(a) + yy * math.sin(a), -xx * math.sin(a) + yy * math.cos(a)
    square = (np.abs(u) <= 80) & (np.abs(v) <= 80)  # 160 px sides at 0.5 µm: 80 µm
    assert perimeter_um(square, 0.5) == pytest.approx(4 * 80.0, rel=0.02)


def test_anisotropic_pixels():
    spacing = (0.5, 1.0)
    assert perimeter_um(disk(60.0, spacing), spacing) == pytest.approx(2 * math.pi * 60.0, rel=0.02)


def test_image_frame_is_not_a_surface():
    mask = np.zeros((100, 240), bool)
    mask[60:] = True  # bone cut by the frame on three sides: only the top edge is surface
    assert perimeter_um(mask, 0.5) == pytest.approx(240 * 0.5, rel=0.01)
    assert perimeter_um(np.ones((50, 50), bool), 0.5) == 0.0
    assert perimeter_um(np.zeros((50, 50), bool), 0.5) == 0.0


def test_outline_parts_sum_to_whole():
    mask = disk(30.0, (0.5, 0.5))
    line = outline(mask, 0.5)
    upper = line.midpoints[:, 0] < mask.shape[0] / 2
    assert line.length_um(upper) + line.length_um(~upper) == pytest.approx(line.length_um())
    assert line.length_um(upper) == pytest.approx(math.pi * 30.0, rel=0.03)


def test_bad_spacing_is_refused():
    with pytest.raises(bi.BoneImgError, match="spacing_um"):
        perimeter_um(np.ones((4, 4), bool), 0)


@pytest.fixture
def bone_in_tumour():
    """A 50 µm bone disk in tissue; tumour fills the half-plane below its centre; one osteoclast
    covers the bone surface between 60° and 120° (top), another sits 20 µm off bone."""
    px = 0.5
    yy, xx = (np.mgrid[:400, :400] - 199.7) * px  # µm from the disk centre, y down
    r = np.hypot(yy, xx)
    regions = np.full(yy.shape, 2, np.uint8)
    regions[yy > 0] = 3
    regions[r <= 50] = 1
    angle = np.degrees(np.arctan2(-yy, xx))  # 90° = straight up
    labels = np.zeros(yy.shape, np.int32)
    labels[(r > 50) & (r <= 58) & (angle >= 60) & (angle <= 120)] = 1
    labels[(np.hypot(yy + 85, xx) <= 8)] = 2  # centre 85 µm above: 27 µm of soft tissue in between
    table = pd.DataFrame({"label": [1, 2], "counted": [True, False], "at_tumour": [False, False]})
    return regions, labels, table, px


def test_section_measurements_closed_form(bone_in_tumour):
    regions, labels, table, px = bone_in_tumour
    m, notes = section_measurements(regions, px, n_tumour_cells=7, osteoclasts=table, osteoclast_labels=labels,
                                    contact_um=1.0, interface_um=1.0)
    assert set(SYMBOLS) <= set(m)
    assert m["T.Ar_mm2"] == pytest.approx(400 * 400 * px * px / 1e6)
    assert m["B.Ar/T.Ar_pct"] == pytest.approx(100 * math.pi * 50 ** 2 / (200 ** 2), rel=0.01)
    assert m["B.Pm_mm"] == pytest.approx(2 * math.pi * 50 / 1000, rel=0.02)
    assert m["TBI.Pm_mm"] == pytest.approx(math.pi * 50 / 1000, rel=0.03)  # the lower half
    assert m["Oc.Pm_mm"] == pytest.approx(math.pi / 3 * 50 / 1000, rel=0.05)  # 60° of arc
    assert m["Oc.S/BS_pct"] == pytest.approx(100 / 6, rel=0.05)
    assert m["N.Oc"] == 1 and m["N.TumourCells"] == 7
    assert m["N.Oc/B.Pm_per_mm"] == pytest.approx(1 / m["B.Pm_mm"])
    assert m["N.Oc.TBI"] == 0 and m["N.Oc/TBI.Pm_per_mm"] == 0.0
    assert notes == {}


def test_contact_tolerance_widens_osteoclast_surface(bone_in_tumour):
    regions, labels, table, px = bone_in_tumour
    table = table.assign(counted=True)
    near, _ = section_measurements(regions, px, n_tumour_cells=0, osteoclasts=table, osteoclast_labels=labels,
                                   contact_um=1.0)
    far, _ = section_measurements(regions, px, n_tumour_cells=0, osteoclasts=table, osteoclast_labels=labels,
                                  contact_um=40.0)
    assert far["Oc.Pm_mm"] > near["Oc.Pm_mm"] * 1.2  # the off-bone cell now reaches the surface


def test_not_applicable_symbols_are_nan_with_reasons():
    empty = np.zeros((50, 50), np.uint8)
    m, notes = section_measurements(empty, 0.5, n_tumour_cells=0)
    assert m["T.Ar_mm2"] == 0 and math.isnan(m["B.Ar/T.Ar_pct"]) and "no tissue" in notes["B.Ar/T.Ar_pct"]
    assert math.isnan(m["N.Oc"]) and "TRAP" in notes["N.Oc"]
    soft = np.full((50, 50), 2, np.uint8)
    no_cells = pd.DataFrame({"label": pd.Series([], dtype=int), "counted": pd.Series([], dtype=bool),
                             "at_tumour": pd.Series([], dtype=bool)})
    m, notes = section_measurements(soft, 0.5, n_tumour_cells=0, osteoclasts=no_cells,
                                    osteoclast_labels=np.zeros((50, 50), np.int32))
    assert m["N.Oc"] == 0 and m["B.Pm_mm"] == 0
    for symbol in ("N.Oc/B.Pm_per_mm", "Oc.S/BS_pct", "N.Oc/TBI.Pm_per_mm"):
        assert math.isnan(m[symbol]) and notes[symbol]
    assert m["N.Oc/T.Ar_per_mm2"] == 0.0


def test_interface_does_not_reach_through_a_trabecula():
    """A 10 µm thick trabecula with tumour on one side only: its far side faces marrow and is no
    interface, although it lies within interface_um=15 µm of the tumour in a straight line."""
    px = 0.5
    regions = np.full((200, 400), 2, np.uint8)
    regions[80:100] = 1        # bone rows 40-50 µm, running across the whole field
    regions[100:] = 3          # tumour against its lower surface
    m, _ = section_measurements(regions, px, n_tumour_cells=0, interface_um=15.0)
    assert m["B.Pm_mm"] == pytest.approx(2 * 400 * px / 1000, rel=0.01)
    assert m["TBI.Pm_mm"] == pytest.approx(400 * px / 1000, rel=0.01)  # the lower surface only
