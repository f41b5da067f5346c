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


def test_sample_data_is_calibrated(plugin):
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.open_sample("boneimg", "he_section")
    names = [layer.name for layer in viewer.layers]
    assert names == ["H&E section (synthetic)", "true regions", "true nuclei"]
    for layer in viewer.layers:
        np.testing.assert_allclose(layer.scale, [0.5, 0.5])
    viewer.open_sample("boneimg", "ct_lesions")
    np.testing.assert_allclose(viewer.layers["micro-CT with lesions (synthetic)"].scale, [20, 20, 20])
    viewer.open_sample("boneimg", "trap_section")
    viewer.open_sample("boneimg", "radiograph")
    assert viewer.layers["true lytic"].data.any()


def test_labels_writer_keeps_pixel_size(plugin, tmp_path):
    from napari.layers import Labels

    labels = np.zeros((40, 60), np.int32)
    labels[5:15, 10:30] = 3
    layer = Labels(labels, scale=(0.25, 0.25), units=("µm", "µm"), name="corrected nuclei")
    path = tmp_path / "corrected.ome.tif"
    layer.save(str(path), plugin="boneimg")
    image = bi.load(path)
    assert image.spacing_um == (0.25, 0.25)
    np.testing.assert_array_equal(image.data, labels)


def test_labels_writer_refuses_pixel_units(tmp_path):
    from boneimg_napari._writer import write_labels

    meta = {"name": "labels", "scale": (1.0, 1.0), "units": ("pixel", "pixel")}  # as napari passes it
    with pytest.raises(bi.BoneImgError, match="no physical scale"):
        write_labels(str(tmp_path / "x.ome.tif"), np.zeros((4, 4), np.int32), meta)
    assert list(tmp_path.iterdir()) == []


def test_points_writer_pixels_and_microns(plugin, tmp_path):
    from napari.layers import Points

    from boneimg.io.write import read_table

    layer = Points([[10.0, 20.0], [30.0, 5.0]], scale=(0.5, 0.5), units=("µm", "µm"),
                   features={"cell_type": ["tumour", "immune"]})
    path = tmp_path / "points.csv"
    layer.save(str(path), plugin="boneimg")
    table = read_table(path)
    assert table[["x", "y"]].values.tolist() == [[20.0, 10.0], [5.0, 30.0]]
    assert table[["x_um", "y_um"]].values.tolist() == [[10.0, 5.0], [2.5, 15.0]]
    assert table["cell_type"].tolist() == ["tumour", "immune"]


def test_nucleus_points_coloured_by_cell_type_and_updated_on_rerun():
    import pandas as pd
    from napari.components import ViewerModel
    from napari.utils.colormaps.standardize_color import transform_color

    from boneimg_napari._layers import CELL_TYPE_COLOURS, nucleus_points, show_layers

    image = bi.Image(np.zeros((20, 20, 3), np.uint8), "yxc", (0.5, 0.5))
    types = ["tumour", "immune", "stromal", "other", "tumour"]
    typed = pd.DataFrame({"label": range(1, 6), "x": range(5), "y": range(5), "cell_type": types})
    viewer = ViewerModel()
    viewer.add_image(image.data, rgb=True, name="section")
    show_layers(viewer.layers, [nucleus_points(typed, image, "centres", size=4)])
    layer = viewer.layers["centres"]
    np.testing.assert_allclose(layer.face_color, transform_color([CELL_TYPE_COLOURS[t] for t in types]))
    np.testing.assert_allclose(layer.scale, [0.5, 0.5])

    # a classical rerun has no cell types: the layer becomes yellow, where it was, without warnings
    show_layers(viewer.layers, [nucleus_points(typed.drop(columns="cell_type")[:2], image, "centres", size=6)])
    untyped = viewer.layers["centres"]
    assert [lay.name for lay in viewer.layers] == ["section", "centres"] and "cell_type" not in untyped.features
    np.testing.assert_allclose(untyped.face_color, transform_color(["yellow"] * 2))
    np.testing.assert_array_equal(untyped.size, 6)

    show_layers(viewer.layers, [nucleus_points(typed, image, "centres", size=5)])  # updated in place
    assert viewer.layers["centres"] is untyped and len(untyped.data) == 5
    np.testing.assert_allclose(untyped.face_color, transform_color([CELL_TYPE_COLOURS[t] for t in types]))
    np.testing.assert_array_equal(untyped.size, 5)
