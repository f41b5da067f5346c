"""Colour deconvolution and per-image stain estimation."""

import numpy as np
import pytest

import boneimg as bi
from boneimg.histology import stains


def _render(amounts, vectors, glass=(245.0, 240.0, 248.0), noise=1.5, seed=0):
    """RGB uint8 through Beer–Lambert from stain amounts (..., k) and unit vectors (k, 3)."""
    rng = np.random.default_rng(seed)
    od = amounts @ np.asarray(vectors)
    rgb = np.asarray(glass) * 10.0 ** (-od) + rng.normal(0, noise, od.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _he_field(h_vec, e_vec, seed=0):
    rng = np.random.default_rng(seed)
    amounts = np.zeros((200, 200, 2))
    amounts[..., 1] = rng.uniform(0.05, 0.8, (200, 200))           # eosin everywhere in tissue
    nuclei = rng.random((200, 200)) < 0.25
    amounts[..., 0][nuclei] = rng.uniform(0.3, 1.2, nuclei.sum())  # hematoxylin in a quarter
    amounts[:20] = 0                                               # a strip of glass
    return _render(amounts, [h_vec, e_vec], seed=seed), amounts


def test_estimate_stains_recovers_shifted_vectors():
    h = _unit([0.60, 0.74, 0.30])  # ~5° from the reference
    e = _unit([0.12, 0.95, 0.25])
    rgb, _ = _he_field(h, e)
    est = stains.estimate_stains(rgb)
    assert est.estimated and est.names == ("hematoxylin", "eosin")
    angles = np.degrees(np.arccos(np.clip((est.od * np.vstack([h, e])).sum(1), -1, 1)))
    assert (angles < 6).all(), angles
    assert np.allclose(est.background, (245, 240, 248), atol=6)


def test_separate_stains_measures_amounts():
    h, e = _unit([0.65, 0.70, 0.29]), _unit([0.07, 0.99, 0.11])
    rgb, amounts = _he_field(h, e, seed=1)
    vectors = stains.StainVectors(("hematoxylin", "eosin"), np.vstack([h, e]),
                                  np.array([245.0, 240.0, 248.0]), True)
    out = stains.separate_stains(rgb, vectors)
    assert out.shape == (200, 200, 2) and out.dtype == np.float32
    visible = (rgb > 8).all(axis=-1)  # not clipped to black
    err = np.abs(out[visible] - amounts[visible])
    assert np.median(err) < 0.03


def test_stain_amount_lookup_matches_float_path():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    vectors = stains.estimate_stains(rgb)
    lut = stains.stain_amount(rgb, vectors, 0)
    direct = stains.stain_amount(rgb.astype(np.float32) / 255,
                                 stains.StainVectors(vectors.names, vectors.od, vectors.background / 255, True), 0)
    assert np.allclose(lut, direct, atol=1e-4)


def test_uint16_twelve_bit_data_reads_like_uint8():
    rgb8, _ = _he_field(_unit([0.65, 0.70, 0.29]), _unit([0.07, 0.99, 0.11]), seed=3)
    rgb12 = (rgb8.astype(np.uint32) * 4095 // 255).astype(np.uint16)
    a = stains.estimate_stains(rgb8)
    b = stains.estimate_stains(rgb12)
    assert np.allclose(a.od, b.od, atol=0.02)
    assert np.allclose(b.background / 4095, a.background / 255, atol=0.01)


def test_blank_image_falls_back_to_reference():
    white = np.full((64, 64, 3), 250, np.uint8)
    est = stains.estimate_stains(white)
    assert not est.estimated and "stained pixels" in est.note
    assert np.allclose(est.od, stains.reference_stains("he").od)
    nuc = stains.estimate_nuclear_contrast(white)
    assert not nuc.estimated


def test_nuclear_contrast_unmixes_against_tissue_colour():
    # purple "cytoplasm" = eosin plus a little hematoxylin; nuclei = much more hematoxylin
    h, e = _unit([0.65, 0.70, 0.29]), _unit([0.07, 0.99, 0.11])
    rng = np.random.default_rng(4)
    amounts = np.zeros((120, 120, 2))
    amounts[..., 0] = 0.15 + 0.02 * rng.standard_normal((120, 120))
    amounts[..., 1] = 0.5 + 0.05 * rng.standard_normal((120, 120))
    amounts[40:60, 40:60, 0] = 0.9
    rgb = _render(np.clip(amounts, 0, None), [h, e], seed=4)
    pair = stains.estimate_nuclear_contrast(rgb)
    assert pair.names == ("hematoxylin", "tissue")
    signal = stains.stain_amount(rgb, pair, 0)
    # the tissue around nuclei reads close to zero, nuclei well above it
    assert np.median(signal[:30, :30]) < 0.08
    assert np.median(signal[45:55, 45:55]) > 0.5


def test_bad_input():
    with pytest.raises(bi.BoneImgError, match="shape"):
        stains.estimate_stains(np.zeros((10, 10)))
    with pytest.raises(bi.BoneImgError, match="stain must be"):
        stains.reference_stains("pas")
    with pytest.raises(bi.BoneImgError, match="stained"):
        stains.estimate_stains(np.zeros((10, 10, 3), np.uint8), stained="some")
