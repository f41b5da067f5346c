"""The analysis widgets run boneimg in the background and show its results as layers."""

import numpy as np
import pytest

import boneimg as bi
from boneimg.sample_data import phantoms, sections

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def _run(widget, qtbot):
    widget.run()
    qtbot.waitUntil(lambda: widget.status.value in ("done",) or widget.status.value.startswith("failed"), timeout=120_000)
    assert widget.status.value == "done"


def test_section_widget_adds_results_with_scale(make_napari_viewer, qtbot):
    from boneimg_napari._layers import image_layer
    from boneimg_napari._widgets import SectionWidget

    viewer = make_napari_viewer()
    sample = sections.trap_section((384, 384), 0.5, seed=2)
    data, kwargs, _ = image_layer(sample.image, "trap")
    layer = viewer.add_image(data, **kwargs)
    widget = SectionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.value = layer
    _run(widget, qtbot)

    expected = bi.analyze_section(sample.image, stain="auto")
    regions = viewer.layers["trap regions"]
    np.testing.assert_array_equal(regions.data, expected.regions)
    np.testing.assert_allclose(regions.scale, [0.5, 0.5])
    osteoclasts = viewer.layers["trap osteoclasts"]
    assert len(osteoclasts.data) == len(expected.osteoclasts)
    assert {"label", "n_nuclei", "on_bone"} <= set(osteoclasts.features.columns)
    table = widget.table.to_dataframe()
    n_oc = table.loc[table["measurement"] == "N.Oc", "value"].item()
    assert n_oc == expected.measurements["N.Oc"]

    _run(widget, qtbot)  # re-running updates the layers instead of adding new ones
    assert [l.name for l in viewer.layers].count("trap regions") == 1


def test_ct_widget_labels_lesions(make_napari_viewer, qtbot):
    from boneimg_napari._layers import image_layer
    from boneimg_napari._widgets import CTWidget

    viewer = make_napari_viewer()
    phantom = phantoms.lesion_phantom("lytic", voxel_size_um=25.0, seed=1)
    data, kwargs, _ = image_layer(phantom.image, "tibia")
    layer = viewer.add_image(data, **kwargs)
    data, kwargs, _ = image_layer(phantom.truth["reference"], "baseline")
    baseline = viewer.add_image(data, **kwargs)
    widget = CTWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.value = layer
    widget.reference_layer.value = baseline
    _run(widget, qtbot)
    lesions = viewer.layers["tibia lesions"]
    np.testing.assert_allclose(lesions.scale, phantom.image.spacing_um)
    expected = bi.analyze_ct(phantom.image, reference=phantom.truth["reference"])
    np.testing.assert_array_equal(lesions.data, expected.lesions)
    assert (lesions.data == 1).any()


def test_missing_pixel_size_is_reported(make_napari_viewer, qtbot):
    from boneimg_napari._widgets import SectionWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.full((64, 64, 3), 255, np.uint8), rgb=True, name="uncalibrated")
    widget = SectionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.value = layer
    with pytest.raises(bi.BoneImgError, match="pixel size is unknown"):
        bi.analyze_section(widget.image())


def test_widgets_open_from_the_plugin_menu(make_napari_viewer, npe2pm):
    with npe2pm.tmp_plugin(package="boneimg"):
        viewer = make_napari_viewer()
        viewer.add_image(np.zeros((8, 8)), name="scan")
        for name in ("Section analysis (H&E, TRAP)", "Micro-CT lesions and morphometry", "Radiograph lesions"):
            dock, widget = viewer.window.add_plugin_dock_widget("boneimg", name)
            assert widget.image_layer.value.name == "scan"  # napari injected this viewer: its layer is offered
