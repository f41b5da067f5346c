"""QC overlays drawn from analysis results of each modality."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from boneimg.io.image import Image
from boneimg.study.analyses import canonical_modality, register_analysis, registered_analyses
from boneimg.study.qc import COLOURS, draw_overlay
from boneimg import BoneImgError


def is_colour(rgb, name):
    return np.all(rgb == COLOURS[name], axis=-1)


def test_radiograph_lesions_are_outlined_and_tinted():
    data = np.full((40, 30), 1000, np.uint16)
    data[:, 10:20] = 5000
    lesions = np.zeros((40, 30), np.uint8)
    lesions[10:15, 12:18] = 1
    rgb = draw_overlay(Image(data, "yx", (10.0, 10.0), "radiograph"), SimpleNamespace(lesions=lesions))
    assert rgb.shape == (40, 30, 3) and rgb.dtype == np.uint8
    outline = is_colour(rgb, "lytic")
    inside = np.zeros_like(outline)
    inside[11:14, 13:17] = True
    assert outline.sum() == 30 - 12 and not (outline & inside).any() and outline[10, 12:18].all()
    assert (rgb[inside][:, 0] > rgb[inside][:, 1]).all()  # tinted red, not left grey
    assert (rgb[0, 0] == rgb[0, 0, 0]).all()  # untouched background stays grey


def test_volume_is_shown_at_the_slice_with_most_lesion():
    data = np.zeros((6, 20, 20), np.uint8)
    lesions = np.zeros_like(data)
    lesions[4, 5:10, 5:10] = 2
    lesions[1, 5:7, 5:7] = 1
    rgb = draw_overlay(Image(data, "zyx", (5.0,) * 3, "ct"), SimpleNamespace(lesions=lesions, bone=data > 0))
    assert is_colour(rgb, "blastic").sum() == 16 and not is_colour(rgb, "lytic").any()


def test_section_regions_and_osteoclasts_and_subsampling():
    rgb_in = np.full((3000, 900, 3), 200, np.uint8)
    regions = np.zeros((3000, 900), np.uint8)
    regions[300:900, 300:600] = 3
    cells = pd.DataFrame({"x": [450.0], "y": [1500.0]})
    result = SimpleNamespace(regions=regions, osteoclasts=cells)
    rgb = draw_overlay(Image(rgb_in, "yxc", (0.5, 0.5), "brightfield"), result, max_side=1000)
    assert rgb.shape == (1000, 300, 3)  # every 3rd pixel
    assert is_colour(rgb, "tumour")[100:300, 100:200].any()
    assert is_colour(rgb, "osteoclast")[500, 150]


def test_registry_entries_and_aliases():
    assert canonical_modality(" X-Ray ") == "radiograph" and canonical_modality("section") == "brightfield"
    with pytest.raises(BoneImgError, match="unknown modality 'pet'"):
        canonical_modality("pet")
    analyses = registered_analyses()
    assert analyses["brightfield"].name == "boneimg.histology.section:analyze_section"
    previous = register_analysis("xray", "math:sqrt")
    try:
        assert registered_analyses()["radiograph"].name == "math:sqrt"
        missing = register_analysis("xray", "boneimg.nowhere:analyze")
        assert missing.name == "math:sqrt"
        with pytest.raises(BoneImgError, match="boneimg.nowhere:analyze is not available.*ModuleNotFoundError"):
            registered_analyses()["radiograph"].analyze(None, {})
    finally:
        register_analysis("radiograph", previous.function, overlay=previous.overlay)
    assert registered_analyses() == analyses
