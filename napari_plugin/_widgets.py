"""Analysis widgets: run a boneimg analysis on a layer in the background, show the results.

The widgets only gather parameters (in µm), call boneimg and turn its results into layers; no
analysis logic lives here.
"""

import napari
import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox, Table, create_widget
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error

import boneimg as bi

from ._layers import image_from_layer, labels_layer, points_layer

_PIXEL_SIZE_TOOLTIP = "Pixel size in µm; 0 takes it from the image layer (its scale in µm)"


def measurements_table(measurements, notes=None):
    """Measurements as a two-column table (symbol, value), with the reason where a value is NaN."""
    notes = notes or {}
    rows = [{"measurement": key, "value": value, "note": notes.get(key, "")}
            for key, value in measurements.items() if not isinstance(value, (dict, list, tuple))]
    return pd.DataFrame(rows, columns=["measurement", "value", "note"])


class AnalysisWidget(Container):
    """Image picker, pixel size, Run/Cancel, a status line and the measurements of the last run."""

    layer_type = "napari.layers.Image"

    def __init__(self, viewer, options=()):
        self._viewer = viewer
        self._worker = None
        self.image_layer = create_widget(label="image", annotation=self.layer_type)
        self.pixel_size = FloatSpinBox(label="pixel size (µm)", value=0.0, min=0.0, max=10000.0, step=0.05,
                                       tooltip=_PIXEL_SIZE_TOOLTIP)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.table = Table(value=measurements_table({}))
        super().__init__(widgets=[self.image_layer, *options, self.pixel_size, self.run_button,
                                  self.cancel_button, self.status, self.table])
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

        @thread_worker(progress={"total": 0})
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
        for data, kwargs, kind in self.show(image, result):
            name = kwargs["name"]
            if name in self._viewer.layers:  # re-running updates the layer in place
                self._viewer.layers[name].data = data
                if "features" in kwargs:
                    self._viewer.layers[name].features = kwargs["features"]
            else:
                getattr(self._viewer, f"add_{kind}")(data, **kwargs)
        self.set_measurements(result.measurements, getattr(result, "notes", {}))
        self.status.value = "done"

    def set_measurements(self, measurements, notes=None):
        self.table.value = measurements_table(measurements, notes)


class SectionWidget(AnalysisWidget):
    """Regions, nuclei, osteoclasts and histomorphometry of an H&E or TRAP section."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.stain = ComboBox(label="stain", choices=["auto", "he", "trap"], value="auto")
        self.min_nuclei = SpinBox(label="min nuclei per osteoclast", value=1, min=1, max=20)
        self.contact_um = FloatSpinBox(label="bone contact (µm)", value=3.0, min=0.0, max=100.0)
        super().__init__(viewer, [self.stain, self.min_nuclei, self.contact_um])

    def analyse(self, image):
        return bi.analyze_section(image, stain=self.stain.value, min_nuclei=self.min_nuclei.value,
                                  contact_um=self.contact_um.value)

    def show(self, image, result):
        name = self.image_layer.value.name
        return [
            labels_layer(result.regions, image, f"{name} regions", opacity=0.35),
            labels_layer(result.nuclei.labels, image, f"{name} nuclei", opacity=0.6),
            labels_layer(result.osteoclast_labels, image, f"{name} osteoclast cells", opacity=0.6),
            points_layer(result.osteoclasts, image, f"{name} osteoclasts", size=_diameter_px(result.osteoclasts, image),
                         face_color="transparent", border_color="lime", symbol="ring"),
        ]


def _diameter_px(table, image):
    """Marker size of each cell: its equivalent-circle diameter in pixels (at least 10 px)."""
    if not len(table):
        return 10
    return np.maximum(2 * np.sqrt(table["area_um2"].to_numpy(float) / np.pi) / image.spacing_um[-1], 10)


class CTWidget(AnalysisWidget):
    """Bone, lesions (1 osteolytic, 2 osteoblastic) and morphometry of a micro-CT scan."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.reference_layer = create_widget(label="reference (optional)", annotation="napari.layers.Image",
                                             options={"nullable": True})
        super().__init__(viewer, [self.reference_layer])

    def analyse(self, image):
        reference = self.reference_layer.value
        return bi.analyze_ct(image, reference=None if reference is None else np.asarray(reference.data))

    def show(self, image, result):
        name = self.image_layer.value.name
        return [labels_layer(result.bone.astype(np.uint8), image, f"{name} bone", opacity=0.3),
                labels_layer(result.lesions, image, f"{name} lesions", opacity=0.7)]


class RadiographWidget(CTWidget):
    """Bone outline and osteolytic lesions of a radiograph."""

    def analyse(self, image):
        reference = self.reference_layer.value
        return bi.analyze_radiograph(image, reference=None if reference is None else np.asarray(reference.data))

    def show(self, image, result):
        return [labels_layer(result.lesions, image, f"{self.image_layer.value.name} lytic lesions", opacity=0.7)]
