"""The synthetic H&E and TRAP sections and the exactness of their ground truth."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from boneimg.histology.histomorphometry import section_measurements
from boneimg.histology.osteoclasts import osteoclast_table
from boneimg.sample_data.sections import TRUTH_PARAMETERS, he_section, trap_section


@pytest.fixture(scope="module")
def trap():
    return trap_section((768, 768), 0.5, seed=5)


def test_same_tissue_at_two_magnifications(trap):
    fine = trap_section((1536, 1536), 0.25, seed=5)
    coarse, fine = trap.truth, fine.truth
    assert len(fine["osteoclasts"]) == len(coarse["osteoclasts"])
    assert fine["osteoclasts"]["n_nuclei"].tolist() == coarse["osteoclasts"]["n_nuclei"].tolist()
    for symbol in ("T.Ar_mm2", "B.Ar/T.Ar_pct", "B.Pm_mm", "Tu.Ar_mm2", "Oc.S/BS_pct", "N.Oc/B.Pm_per_mm"):
        assert fine["measurements"][symbol] == pytest.approx(coarse["measurements"][symbol], rel=0.02), symbol
    # the region maps agree pixel for pixel up to the edges
    agree = fine["regions"][::2, ::2] == coarse["regions"]
    assert agree.mean() > 0.99


def test_truth_measurements_come_from_the_truth_masks(trap):
    t = trap.truth
    n_tumour = sum(kind == "tumour" for kind in t["nucleus_class"].values())
    m, _ = section_measurements(t["regions"], 0.5, n_tumour_cells=n_tumour,
                                osteoclasts=t["osteoclasts"], osteoclast_labels=t["osteoclast_labels"],
                                contact_um=TRUTH_PARAMETERS["contact_um"],
                                interface_um=TRUTH_PARAMETERS["interface_um"])
    for symbol, value in m.items():
        assert value == pytest.approx(t["measurements"][symbol], nan_ok=True), symbol
    assert t["measurements"]["N.Oc"] == int(t["osteoclasts"]["counted"].sum()) > 10
    assert t["measurements"]["N.TumourCells"] > 50


def test_osteoclast_truth_is_consistent(trap):
    t = trap.truth
    table = t["osteoclasts"]
    assert table["n_nuclei"].max() >= 3 and (table["n_nuclei"] == 0).any()  # multinucleated; anuclear profiles
    assert table["on_bone"].sum() > 0.7 * len(table) and (~table["on_bone"]).any()
    assert (table["counted"] == (table["on_bone"] & (table["n_nuclei"] >= 1))).all()
    # nuclei per osteoclast: the osteoclast-class nuclei lying inside each cell
    osteoclast_nuclei = np.isin(t["nuclei"], [k for k, v in t["nucleus_class"].items() if v == "osteoclast"])
    owners = ndi.maximum(t["osteoclast_labels"], t["nuclei"] * osteoclast_nuclei,
                         np.unique(t["nuclei"][osteoclast_nuclei]))
    counts = np.bincount(np.asarray(owners, int), minlength=len(table) + 1)
    assert counts[table["label"]].tolist() == table["n_nuclei"].tolist()
    # the measured bone contact agrees with how each cell was placed
    measured = osteoclast_table(t["osteoclast_labels"], 0.5, bone=t["regions"] == 1,
                                contact_um=TRUTH_PARAMETERS["contact_um"])
    assert measured["on_bone"].tolist() == table["on_bone"].tolist()
    assert measured.loc[~table["on_bone"], "bone_gap_um"].min() > 10
    # the osteoclasts lie in soft tissue, and some touch a neighbour
    assert set(np.unique(t["regions"][t["osteoclast_labels"] > 0])) <= {2, 3}
    grown = ndi.grey_dilation(t["osteoclast_labels"], size=3)
    assert ((grown != t["osteoclast_labels"]) & (t["osteoclast_labels"] > 0) & (grown > 0)).any()


def test_nuclei_have_physical_sizes():
    for px in (0.25, 0.5):
        table = he_section((int(256 / px),) * 2, px, seed=2).truth["nuclei_table"]
        diameter = 2 * np.sqrt(table.groupby("cell_type")["area_um2"].median() / math.pi)
        assert 7.0 < diameter["tumour"] < 12.0 and 4.0 < diameter["marrow"] < 7.0


def test_he_and_trap_show_the_same_tissue_in_different_colours():
    he, tr = he_section((384, 384), 0.5, seed=7), trap_section((384, 384), 0.5, seed=7)
    np.testing.assert_array_equal(he.truth["regions"], tr.truth["regions"])
    bone = he.truth["regions"] == 1
    # eosin-pink bone on H&E (green absorbed), blue-green fast green on TRAP (red absorbed)
    he_rgb, tr_rgb = he.image.data[bone].mean(axis=0), tr.image.data[bone].mean(axis=0)
    assert he_rgb[1] < he_rgb[0] and tr_rgb[0] < tr_rgb[1]
    assert np.isnan(he.truth["measurements"]["N.Oc"]) and tr.truth["measurements"]["N.Oc"] >= 0


def test_seeds_vary_stain_and_are_reproducible():
    a, b = trap_section((256, 256), 0.5, seed=1), trap_section((256, 256), 0.5, seed=1)
    np.testing.assert_array_equal(a.image.data, b.image.data)
    c = trap_section((256, 256), 0.5, seed=2)
    angle = np.degrees(np.arccos(np.clip(a.truth["stain_od"]["trap"] @ c.truth["stain_od"]["trap"], -1, 1)))
    assert angle > 0.5
    assert a.image.spacing_um == (0.5, 0.5) and a.image.axes == "yxc" and a.image.data.dtype == np.uint8


def test_section_without_bone():
    t = trap_section((256, 256), 0.5, seed=3, bone_fraction=0.0, cortex=False).truth
    assert not (t["regions"] == 1).any() and len(t["osteoclasts"]) == 0
    assert t["measurements"]["B.Pm_mm"] == 0 and math.isnan(t["measurements"]["N.Oc/B.Pm_per_mm"])
