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
    _wait_measured(widget.review, qtbot)  # the measurements open in the review dock
    assert _table_value(widget.review, "N.Oc") == expected.measurements["N.Oc"]
    assert f"stain: {expected.notes['stain']}" in widget.notes.value.splitlines()  # why TRAP was chosen
    assert not widget.legend.visible  # classical nuclei have no cell types

    centres = viewer.layers["trap nucleus centres"]
    osteoclasts.size, centres.size = 1, 1
    _run(widget, qtbot)  # re-running updates the layers instead of adding new ones
    assert [lay.name for lay in viewer.layers].count("trap regions") == 1
    assert viewer.layers["trap osteoclasts"] is osteoclasts and viewer.layers["trap nucleus centres"] is centres
    diameter_px = 2 * np.sqrt(expected.osteoclasts["area_um2"].to_numpy() / np.pi) / 0.5
    np.testing.assert_allclose(osteoclasts.size, np.maximum(diameter_px, 10))  # marker sizes follow the result
    np.testing.assert_array_equal(centres.size, 4)


def test_nucleus_method_reaches_segmentation(make_napari_viewer, qtbot):
    from boneimg.histology.nuclei import model_weights_available
    from boneimg_napari._layers import image_layer
    from boneimg_napari._widgets import SectionWidget

    viewer = make_napari_viewer()
    data, kwargs, _ = image_layer(sections.he_section((256, 256), 0.5, seed=3).image, "he")
    widget = SectionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.value = viewer.add_image(data, **kwargs)
    widget.nucleus_method.value = "model"
    widget.run()
    qtbot.waitUntil(lambda: widget.status.value == "done" or widget.status.value.startswith("failed"),
                    timeout=120_000)
    if model_weights_available():  # the model types the nuclei: their points are coloured by type
        assert widget.status.value == "done" and not widget.legend.native.isHidden()
        assert viewer.layers["he regions"].metadata["parameters"]["nuclei"]["method"] == "model"
        assert viewer.layers["he nucleus centres"].face_color_mode == "cycle"
    else:
        assert "method='model' needs trained nucleus-model weights" in widget.status.value


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
    assert viewer.layers["tibia bone"].metadata["parameters"]["subvoxel"] is False


def test_ct_widget_passes_the_subvoxel_choice(make_napari_viewer, qtbot, monkeypatch):
    from boneimg_napari._layers import image_layer
    from boneimg_napari._widgets import CTWidget

    viewer = make_napari_viewer()
    volume = phantoms.lesion_phantom("lytic", voxel_size_um=25.0, seed=1).image
    data, kwargs, _ = image_layer(volume, "tibia")
    layer = viewer.add_image(data, **kwargs)
    seen = []
    analyze_ct = bi.analyze_ct
    monkeypatch.setattr(bi, "analyze_ct", lambda image, **kw: seen.append(kw) or analyze_ct(image, reference=None))
    widget = CTWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.value = layer
    widget.subvoxel.value = True
    _run(widget, qtbot)
    assert seen == [{"reference": None, "subvoxel": True}]


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
    from boneimg_napari._review import ExportAnnotationsWidget, MeasurementsWidget
    from boneimg_napari._study import StudyWidget

    with npe2pm.tmp_plugin(package="boneimg"):
        viewer = make_napari_viewer()
        viewer.add_image(np.zeros((8, 8)), name="scan")
        for name in ("Section analysis (H&E, TRAP)", "Micro-CT lesions and morphometry", "Radiograph lesions"):
            dock, widget = viewer.window.add_plugin_dock_widget("boneimg", name)
            assert widget.image_layer.value.name == "scan"  # napari injected this viewer: its layer is offered
        for name, kind in (("Measurements (review edits)", MeasurementsWidget),
                           ("Export training annotations", ExportAnnotationsWidget),
                           ("Study (design or folder)", StudyWidget)):
            assert isinstance(viewer.window.add_plugin_dock_widget("boneimg", name)[1], kind)


def _table_value(widget, symbol):
    table = widget.table.to_dataframe()
    return table.loc[table["measurement"] == symbol, "value"].item()


def _wait_measured(widget, qtbot):
    qtbot.waitUntil(lambda: widget.status.value == "up to date", timeout=60_000)


@pytest.fixture
def reviewed(make_napari_viewer, qtbot):
    """A viewer with a TRAP section analysed by the section widget, and its measurements dock."""
    viewer = make_napari_viewer()
    widget, sample = _analysed_trap_section(viewer, qtbot)
    _wait_measured(widget.review, qtbot)
    return viewer, widget, bi.analyze_section(sample.image, stain="auto")


def _analysed_trap_section(viewer, qtbot):
    """The section widget docked in `viewer` and run on a synthetic TRAP section (layer "trap")."""
    from boneimg_napari._layers import image_layer
    from boneimg_napari._widgets import SectionWidget

    sample = sections.trap_section((384, 384), 0.5, seed=2)
    data, kwargs, _ = image_layer(sample.image, "trap")
    widget = SectionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.value = viewer.add_image(data, **kwargs)
    _run(widget, qtbot)
    return widget, sample


def test_measurements_follow_edits(reviewed, qtbot, tmp_path):
    from boneimg.io.write import read_table

    viewer, widget, expected = reviewed
    review = widget.review
    assert review.regions.value is viewer.layers["trap regions"] and review.stain.value == "trap"
    for symbol in ("N.TumourCells", "N.Oc", "N.Oc/B.Pm_per_mm", "B.Ar_mm2"):
        assert _table_value(review, symbol) == pytest.approx(expected.measurements[symbol]), symbol

    centres = viewer.layers["trap nucleus centres"]
    yx = np.rint(centres.data).astype(int)
    in_tumour = np.flatnonzero(expected.regions[yx[:, 0], yx[:, 1]] == 3)
    k = 2
    assert len(in_tumour) > k
    centres.selected_data = set(in_tumour[:k].tolist())
    centres.remove_selected()  # what the Delete key does
    _wait_measured(review, qtbot)
    assert _table_value(review, "N.TumourCells") == expected.measurements["N.TumourCells"] - k

    osteoclasts = viewer.layers["trap osteoclasts"]
    counted = np.flatnonzero(osteoclasts.features["counted"].to_numpy())
    osteoclasts.selected_data = {int(counted[0])}
    osteoclasts.remove_selected()
    _wait_measured(review, qtbot)
    n_oc, b_pm = expected.measurements["N.Oc"] - 1, expected.measurements["B.Pm_mm"]
    assert _table_value(review, "N.Oc") == n_oc
    assert _table_value(review, "N.Oc/B.Pm_per_mm") == pytest.approx(n_oc / b_pm)

    review.csv_path.value = tmp_path / "measurements.csv"
    review.export_button.clicked.emit()
    table = read_table(tmp_path / "measurements.csv").set_index("measurement")["value"]
    assert table["N.Oc"] == n_oc and table["N.TumourCells"] == expected.measurements["N.TumourCells"] - k


def test_painting_bone_changes_bone_area(reviewed, qtbot):
    viewer, widget, expected = reviewed
    regions = viewer.layers["trap regions"]
    regions.brush_size = 5
    for y, x in np.argwhere(regions.data == 2)[:400:40]:  # brush strokes over marrow, painting bone
        regions.paint((y, x), 1)
    bone_mm2 = np.count_nonzero(regions.data == 1) * 0.25e-6
    assert bone_mm2 > expected.measurements["B.Ar_mm2"]
    _wait_measured(widget.review, qtbot)
    assert _table_value(widget.review, "B.Ar_mm2") == pytest.approx(bone_mm2)


def test_export_annotations_widget(reviewed, tmp_path):
    from boneimg.io.write import read_table
    from boneimg_napari._review import ExportAnnotationsWidget

    viewer, _, expected = reviewed
    widget = ExportAnnotationsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.value = viewer.layers["trap"]
    widget.labels_layer.value = viewer.layers["trap nuclei"]
    widget.points_layer.value = viewer.layers["trap nucleus centres"]
    widget.out_dir.value = tmp_path / "train"
    assert widget.file_name.value == "trap"
    widget.export_button.clicked.emit()
    assert widget.status.value.startswith("wrote"), widget.status.value
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["trap.labels.tif", "trap.ome.tif",
                                                                      "trap.points.csv"]
    assert bi.load(tmp_path / "train" / "trap.ome.tif").spacing_um == (0.5, 0.5)
    np.testing.assert_array_equal(bi.load(tmp_path / "train" / "trap.labels.tif").data, expected.nuclei.labels)
    points = read_table(tmp_path / "train" / "trap.points.csv")
    np.testing.assert_allclose(points[["x", "y"]], expected.nuclei.table[["x", "y"]])


def test_study_widget_cancels_resumes_and_opens_report(qtbot, tmp_path, monkeypatch):
    from boneimg.sample_data.studies import radiograph_study
    from boneimg_napari._study import CANCELLED, StudyWidget

    study = radiograph_study(tmp_path / "study", arms={"vehicle": 1.0, "treated": 0.4}, n_animals=2, n_images=1,
                             pixel_size_um=50.0)
    widget = StudyWidget()
    qtbot.addWidget(widget.native)
    widget.design.value = tmp_path / "study" / "design.csv"
    widget.out_dir.value = tmp_path / "results"
    widget.workers.value = 1
    shown = []
    widget.progress.changed.connect(shown.append)
    widget.run_button.clicked.emit()
    assert widget.cancel_button.enabled
    widget.cancel_button.clicked.emit()  # during the first image: the study stops after it
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)
    assert widget.status.value == CANCELLED
    assert len(list((tmp_path / "results" / "records").glob("*.json"))) == 1
    assert not (tmp_path / "results" / "report.html").exists() and not widget.report_button.enabled

    widget.run_button.clicked.emit()  # resumes: the image done is not analysed again
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)
    assert widget.status.value == "done: 4 images analysed, 0 failed"
    assert shown == [1, 2, 3, 4] and widget.progress.max == 4
    assert len(widget.study.images) == len(study.design) and (tmp_path / "results" / "report.html").exists()
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    widget.report_button.clicked.emit()
    assert opened == [(tmp_path / "results" / "report.html").as_uri()]
    widget.design_kind.value = "folder GROUP/ANIMAL/image"
    assert widget.design.mode.value == "d"


def test_results_are_drawn_over_their_objects(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    widget, sample = _analysed_trap_section(viewer, qtbot)
    viewer.layers["trap"].visible = False  # the overlays alone, on the black canvas
    qtbot.wait(100)
    # a screenshot of the layers' extent, one canvas pixel per image pixel
    rgb = viewer.export_figure(flash=False)[..., :3].astype(int)
    expected = bi.analyze_section(sample.image, stain="auto")
    assert rgb.shape[:2] == expected.regions.shape
    lit = rgb.max(axis=-1) > 20
    assert lit[expected.regions > 0].mean() > 0.99  # tissue tinted by the regions layer
    assert lit[expected.regions == 0].mean() < 0.05
    lime = (rgb[..., 1] > 180) & (rgb[..., 0] < 100) & (rgb[..., 2] < 100)  # osteoclast rings
    for x, y in expected.osteoclasts[["x", "y"]].to_numpy().round().astype(int):
        assert lime[max(y - 40, 0):y + 40, max(x - 40, 0):x + 40].any()
    assert lime.mean() < 0.05
    cells = expected.osteoclast_labels > 0
    regions_only = rgb[(expected.regions == 2) & ~cells & (expected.nuclei.labels == 0)].mean(axis=0)
    assert np.abs(rgb[cells].mean(axis=0) - regions_only).max() > 20  # cells stand out from the marrow tint
