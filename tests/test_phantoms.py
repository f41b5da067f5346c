"""The synthetic long-bone phantoms and their ground truth (sample_data/phantoms.py)."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

import boneimg as bi
from boneimg.sample_data import phantoms

VOXEL_UM = 15.0
FACES = ndi.generate_binary_structure(3, 1)


@pytest.fixture(scope="module")
def mixed():
    return phantoms.lesion_phantom("mixed", voxel_size_um=VOXEL_UM, seed=0)


def through_holes(truth):
    """Holes of the truth's cortical compartment that join its marrow to the outside."""
    holes = truth["cortical"] & ~truth["bone"]
    labels, _ = ndi.label(holes, structure=FACES)
    inner = set(np.unique(labels[ndi.binary_dilation(truth["endosteal"], FACES) & holes]))
    outer = set(np.unique(labels[ndi.binary_dilation(~truth["periosteal"], FACES) & holes]))
    return (inner & outer) - {0}


def test_truth_volumes_are_consistent(mixed):
    v = mixed.truth["volumes_mm3"]
    assert v["Lytic"] == pytest.approx(v["Lytic.Tb"] + v["Lytic.Ct"])
    assert v["Blastic"] == pytest.approx(v["Blastic.Ma"] + v["Blastic.Ps"])
    assert v["BV"] == pytest.approx(v["reference BV"] - v["Lytic"] + v["Blastic"], rel=1e-4)
    voxel_mm3 = VOXEL_UM ** 3 / 1e9
    # majority masks hold the partial volumes up to the voxels cut by a surface (many, on
    # trabeculae 3 voxels thick)
    assert mixed.truth["lytic"].sum() * voxel_mm3 == pytest.approx(v["Lytic"], rel=0.10)
    assert mixed.truth["blastic"].sum() * voxel_mm3 == pytest.approx(v["Blastic"], rel=0.10)
    assert not (mixed.truth["lytic"] & mixed.truth["blastic"]).any()
    np.testing.assert_array_equal(mixed.truth["lesions"] == 1, mixed.truth["lytic"])
    # the class follows the 1 %-of-TV rule on these volumes
    assert 100 * v["Lytic"] / v["TV"] > 1 and 100 * v["Blastic"] / v["TV"] > 1
    assert mixed.truth["lesion_class"] == "mixed"


def test_perforation_truth_is_what_the_masks_hold(mixed):
    assert mixed.truth["n_perforations"] == len(mixed.truth["perforations"]) == 5
    assert len(through_holes(mixed.truth)) == 5
    # every perforation is at least 2 voxels wide
    assert min(p["diameter_um"] for p in mixed.truth["perforations"]) >= 2 * VOXEL_UM
    for hole in mixed.truth["perforations"]:
        assert hole["area_mm2"] == pytest.approx(math.pi * (hole["diameter_um"] / 2000) ** 2)


def test_baseline_is_the_same_bone_without_lesions(mixed):
    intact = phantoms.lesion_phantom("none", voxel_size_um=VOXEL_UM, seed=0)
    np.testing.assert_array_equal(intact.truth["reference_bone"], mixed.truth["reference_bone"])
    np.testing.assert_array_equal(intact.truth["bone"], intact.truth["reference_bone"])
    assert intact.truth["volumes_mm3"]["Lytic"] == intact.truth["volumes_mm3"]["Blastic"] == 0
    assert intact.truth["lesion_class"] == "none" and intact.truth["n_perforations"] == 0
    assert not through_holes(intact.truth)
    # the baseline scan has its own noise
    assert not np.array_equal(intact.image.data, intact.truth["reference"].data)


@pytest.mark.parametrize("kind, expected", [("lytic", "osteolytic"), ("blastic", "osteoblastic")])
def test_single_kind_phantoms(kind, expected):
    truth = phantoms.lesion_phantom(kind, voxel_size_um=20.0, seed=0).truth
    assert truth["lesion_class"] == expected
    assert (truth["volumes_mm3"]["Blastic"] == 0) == (kind == "lytic")
    assert truth["n_perforations"] == (5 if kind == "lytic" else 0)


def test_physical_truth_does_not_depend_on_the_voxel_size(mixed):
    coarse = phantoms.lesion_phantom("mixed", voxel_size_um=(25.0, VOXEL_UM, VOXEL_UM), seed=0)
    assert coarse.image.spacing_um == (25.0, VOXEL_UM, VOXEL_UM)
    assert coarse.image.shape[0] == 48 and coarse.image.shape[1:] == mixed.image.shape[1:]
    for key in ("Lytic", "Blastic", "TV", "BV"):
        assert coarse.truth["volumes_mm3"][key] == pytest.approx(mixed.truth["volumes_mm3"][key], rel=0.03), key


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "int16"])
def test_storage_types(dtype):
    image = phantoms.lesion_phantom("none", voxel_size_um=25.0, seed=0, dtype=dtype).image
    assert image.dtype == np.dtype(dtype) and image.modality == "ct"
    bone_grey = np.percentile(image.data, 99)
    if dtype == "int16":
        assert image.data.min() < 0 < bone_grey
    elif dtype != "float32":
        assert bone_grey > 0.5 * np.iinfo(dtype).max


def test_scanner_blur_and_noise():
    sharp = phantoms.lesion_phantom("none", voxel_size_um=25.0, seed=0, noise_sd=0.0, blur_um=0.0,
                                    dtype="float32")
    truth = sharp.truth["reference_bone"]
    values = np.unique(np.round(sharp.image.data[truth & ndi.binary_erosion(truth, iterations=2)], 3))
    np.testing.assert_allclose(values, [phantoms.BONE], atol=1e-3)
    noisy = phantoms.lesion_phantom("none", voxel_size_um=25.0, seed=0, dtype="float32")
    residual = noisy.image.data - sharp.image.data
    assert residual.std() == pytest.approx(0.06, rel=0.2)


def test_radiograph_truth_is_the_through_lesion(mixed):
    xray = phantoms.radiograph(mixed)
    assert xray.image.dtype == np.uint16 and xray.image.modality == "radiograph"
    assert xray.image.spacing_um == (VOXEL_UM, VOXEL_UM)
    through = next(lesion for lesion in mixed.truth["lesion_layout"] if lesion["name"] == "through lytic")
    assert xray.truth["lytic_n"] == 1
    assert xray.truth["lytic_area_mm2"] == pytest.approx(math.pi * (through["radius"] / 1000) ** 2, rel=0.05)
    assert (xray.truth["lytic"] <= xray.truth["bone"]).all()
    baseline = phantoms.radiograph(mixed, baseline=True)
    assert "lytic" not in baseline.truth and baseline.image.shape == xray.image.shape
    # bone is brighter than the soft tissue beside it, soft tissue brighter than air
    row = xray.image.data[5].astype(float)
    assert row[xray.truth["bone"][5]].mean() > row[~xray.truth["bone"][5]].max() * 0.9 > row[0]


def test_quick_long_bone_and_its_radiograph_still_work():
    bone = phantoms.ct_long_bone((32, 48, 48), 10.0, seed=1)
    assert bone.image.shape == (32, 48, 48) and bone.truth["bone"].any()
    xray = phantoms.radiograph(bone)
    assert xray.image.shape[0] == 32 and xray.truth["bone"].any() and "lytic" not in xray.truth
    with pytest.raises(bi.BoneImgError, match="baseline"):
        phantoms.radiograph(bone, baseline=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "sclerotic"}, "kind must be one of"),
    ({"dtype": "int8"}, "dtype must be one of"),
    ({"length_um": 500.0}, "at least 1000"),
    ({"oversample": 0}, "oversample"),
    ({"voxel_size_um": -1.0}, "voxel_size_um"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(bi.BoneImgError, match=message):
        phantoms.lesion_phantom(**kwargs)
