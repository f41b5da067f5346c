"""The napari reader shows boneimg images at their physical scale."""

import numpy as np
import pytest

import boneimg as bi
from boneimg.io.write import save_image
from boneimg.sample_data import sections

napari = pytest.importorskip("napari")


@pytest.fixture
def plugin(npe2pm):
    """The installed boneimg plugin, registered with napari's test plugin manager."""
    with npe2pm.tmp_plugin(package="boneimg") as registered:
        yield registered


@pytest.fixture
def section_file(tmp_path):
    path = tmp_path / "section.ome.tif"
    save_image(path, sections.he_section((256, 320), 0.5, seed=3).image, pyramid_levels=1)
    return path


def test_reader_sets_scale_and_units(plugin, section_file):
    from napari.components import ViewerModel

    viewer = ViewerModel()
    (layer,) = viewer.open(str(section_file), plugin="boneimg")
    assert layer.rgb and layer.multiscale
    np.testing.assert_allclose(layer.scale, [0.5, 0.5])
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert layer.metadata["boneimg_version"] == bi.__version__


def test_reader_declines_folder_without_slices(tmp_path):
    from boneimg_napari._reader import get_reader

    assert get_reader(str(tmp_path)) is None


@pytest.mark.gui
def test_viewer_shows_section(plugin, make_napari_viewer, section_file, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(section_file), plugin="boneimg")
    viewer.reset_view()
    qtbot.wait(100)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    rgb = shot[..., :3].astype(int)
    # tissue pixels: clearly coloured (stain), not the black or grey of an empty canvas
    coloured = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 40
    assert coloured.mean() > 0.2
