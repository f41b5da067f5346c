"""Analysis widgets: run a boneimg analysis on a layer in the background, show the results.

The widgets only gather parameters (in µm), call boneimg and turn its results into layers; no
analysis logic lives here.
"""

import napari
import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox, Table, TextEdit,
                              create_widget)
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error

import boneimg as bi

from ._layers import cell_type_legend, image_from_layer, labels_layer, nucleus_points, points_layer, show_layers
from ._review import MeasurementsWidget, measurements_table

_PIXEL_SIZE_TOOLTIP = "Pixel size in µm; 0 takes it from the image layer (its scale in µm)"
_NUCLEUS_METHOD_TOOLTIP = ("auto: the trained model when one is installed (not on TRAP), else classical; "
                           "classical: stain separation and watershed; model: the trained network, which "
                           "also types each nucleus (tumour, immune, stromal, other)")


class AnalysisWidget(Container):
    """Image picker, pixel size, Run/Cancel, a status line and the measurements of the last run
    (in a table, unless `table` is False and the subclass shows them elsewhere)."""

    layer_type = "napari.layers.Image"

    def __init__(self, viewer, options=(), *, table=True):
        self._viewer = viewer
        self._worker = None
        self.image_layer = create_widget(label="image", annotation=self.layer_type)
        self.pixel_size = FloatSpinBox(label="pixel size (µm)", value=0.0, min=0.0, max=10000.0, step=0.05,
                                       tooltip=_PIXEL_SIZE_TOOLTIP)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.table = Table(value=measurements_table({})) if table else None
        super().__init__(widgets=[self.image_layer, *options, self.pixel_size, self.run_button,
                                  self.cancel_button, self.status, *([self.table] if table else [])])
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)

    def image(self):
        """The picked layer as a boneimg Image, with the pixel size override applied."""
        layer = self.image_layer.value
        if layer is None:
            raise bi.BoneImgError("pick an image layer first")
        image = image_from_layer(layer)
        if self.pixel_size.value > 0:
            image = image.with_spacing(self.pixel_size.value)
        return image

    def analyse(self, image):
        """Run the analysis (in a worker thread); subclasses return the result object."""
        raise NotImplementedError

    def show(self, image, result):
        """Turn a result into layers; subclasses return layer data tuples."""
        raise NotImplementedError

    def run(self):
        try:
            image = self.image()
        except bi.BoneImgError as exc:
            show_error(str(exc))
            return
        self.status.value = "running..."
        self.run_button.enabled, self.cancel_button.enabled = False, True

        @thread_worker(progress={"total": 0}, ignore_errors=True)  # errored is connected below
        def work():
            return self.analyse(image)

        self._worker = work()
        self._worker.returned.connect(lambda result: self._finished(image, result))
        self._worker.errored.connect(self._failed)
        self._worker.finished.connect(self._idle)
        self._worker.start()

    def cancel(self):
        if self._worker is not None:
            self._worker.quit()
            self.status.value = "cancelled"

    def _idle(self):
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self._worker = None

    def _failed(self, exc):
        self.status.value = f"failed: {exc}"
        show_error(str(exc))

    def _finished(self, image, result):
        show_layers(self._viewer.layers, self.show(image, result))  # re-running updates the layers
        self.show_measurements(result)
        self.status.value = "done"

    def show_measurements(self, result):
        self.table.value = measurements_table(result.measurements, getattr(result, "notes", {}))


class SectionWidget(AnalysisWidget):
    """Regions, nuclei, osteoclasts and histomorphometry of an H&E or TRAP section.

    The results open for review: their measurements are shown in a Measurements dock, which
    measures the result layers again after each edit.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.stain = ComboBox(label="stain", choices=["auto", "he", "trap"], value="auto")
        self.min_nuclei = SpinBox(label="min nuclei per osteoclast", value=1, min=1, max=20)
        self.contact_um = FloatSpinBox(label="bone contact (µm)", value=3.0, min=0.0, max=100.0)
        self.nucleus_method = ComboBox(label="nucleus method", choices=["auto", "classical", "model"], value="auto",
                                       tooltip=_NUCLEUS_METHOD_TOOLTIP)
        super().__init__(viewer, [self.stain, self.nucleus_method, self.min_nuclei, self.contact_um], table=False)
        self.legend = Label(label="nucleus types", value=cell_type_legend(), visible=False)
        self.notes = TextEdit(label="notes", value="")
        self.notes.read_only = True
        self.extend([self.legend, self.notes])
        self.review = None

    def analyse(self, image):
        return bi.analyze_section(image, stain=self.stain.value, min_nuclei=self.min_nuclei.value,
                                  contact_um=self.contact_um.value,
                                  nuclei_params={"method": self.nucleus_method.value})

    def layer_names(self):
        """Names of the result layers: regions, nuclei, nucleus centres, osteoclast cells, osteoclasts."""
        name = self.image_layer.value.name
        return [f"{name} {part}" for part in ("regions", "nuclei", "nucleus centres", "osteoclast cells",
                                              "osteoclasts")]

    def show(self, image, result):
        regions, nuclei, centres, cells, osteoclasts = self.layer_names()
        return [
            labels_layer(result.regions, image, regions, parameters=result.parameters, opacity=0.35),
            labels_layer(result.nuclei.labels, image, nuclei, opacity=0.6),
            nucleus_points(result.nuclei.table, image, centres, size=4),
            labels_layer(result.osteoclast_labels, image, cells, opacity=0.6),
            points_layer(result.osteoclasts, image, osteoclasts, size=_diameter_px(result.osteoclasts, image),
                         face_color="transparent", border_color="lime", symbol="ring"),
        ]

    def show_measurements(self, result):
        self.legend.visible = "cell_type" in result.nuclei.table
        self.notes.value = "\n".join(f"{key}: {note}" for key, note in result.notes.items())
        if self.review is None:
            self.review = MeasurementsWidget(self._viewer)
            self._viewer.window.add_dock_widget(self.review, name="boneimg measurements")
        regions, _, centres, cells, osteoclasts = (self._viewer.layers[n] for n in self.layer_names())
        self.review.bind(regions, centres, osteoclasts, cells, result.parameters)


def _diameter_px(table, image):
    """Marker size of each cell: its equivalent-circle diameter in pixels (at least 10 px)."""
    if not len(table):
        return 10
    return np.maximum(2 * np.sqrt(table["area_um2"].to_numpy(float) / np.pi) / image.spacing_um[-1], 10)


class _WithReference(AnalysisWidget):
    """An analysis that takes an optional reference image (baseline or mirrored contralateral)."""

    def __init__(self, viewer, options=()):
        self.reference_layer = create_widget(label="reference (optional)", annotation="napari.layers.Image",
                                             options={"nullable": True})
        super().__init__(viewer, [self.reference_layer, *options])

    def reference(self):
        """The reference layer's data, or None."""
        layer = self.reference_layer.value
        return None if layer is None else np.asarray(layer.data)


class CTWidget(_WithReference):
    """Bone, lesions (1 osteolytic, 2 osteoblastic) and morphometry of a micro-CT scan."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.subvoxel = CheckBox(text="sub-voxel thickness (27x the time and memory)", value=False)
        super().__init__(viewer, [self.subvoxel])

    def analyse(self, image):
        return bi.analyze_ct(image, reference=self.reference(), subvoxel=self.subvoxel.value)

    def show(self, image, result):
        name = self.image_layer.value.name
        return [labels_layer(result.bone.astype(np.uint8), image, f"{name} bone", parameters=result.parameters,
                             opacity=0.3),
                labels_layer(result.lesions, image, f"{name} lesions", parameters=result.parameters, opacity=0.7)]


class RadiographWidget(_WithReference):
    """Bone outline and osteolytic lesions of a radiograph."""

    def __init__(self, viewer: napari.viewer.Viewer):  # the annotation lets napari inject the viewer
        super().__init__(viewer)

    def analyse(self, image):
        return bi.analyze_radiograph(image, reference=self.reference())

    def show(self, image, result):
        return [labels_layer(result.lesions, image, f"{self.image_layer.value.name} lytic lesions", opacity=0.7)]
