"""Review widgets: measurements that follow edits of the result layers, and corrected annotations
exported for training. The measuring and writing are boneimg's (:mod:`boneimg.histology.review`)."""

import re
from pathlib import Path

import napari
import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit, PushButton, SpinBox, Table
from magicgui.widgets import create_widget
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

import boneimg as bi
from boneimg.histology.review import export_annotations, remeasure_section
from boneimg.io.write import save_table

from ._layers import image_from_layer, layer_spacing_um, points_table

_DEBOUNCE_MS = 300  # a paint stroke or a run of deletions is measured once, when it pauses


def measurements_table(measurements, notes=None):
    """Measurements as a table (symbol, value), with the reason where a value is NaN."""
    notes = notes or {}
    rows = [{"measurement": key, "value": value, "note": notes.get(key, "")}
            for key, value in measurements.items() if not isinstance(value, (dict, list, tuple))]
    return pd.DataFrame(rows, columns=["measurement", "value", "note"])


def _layer_picker(label, kind, nullable=False):
    return create_widget(label=label, annotation=f"napari.layers.{kind}", options={"nullable": nullable})


class MeasurementsWidget(Container):
    """Histomorphometry of the (edited) result layers of a section, measured again after each edit.

    Delete or add nucleus centres and osteoclasts, repaint regions or cells, or change an
    osteoclast's ``n_nuclei`` feature: the table follows. Export it as CSV.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self._viewer = viewer
        self.regions = _layer_picker("regions", "Labels")
        self.nuclei = _layer_picker("nucleus centres", "Points", nullable=True)
        self.osteoclasts = _layer_picker("osteoclasts", "Points", nullable=True)
        self.cells = _layer_picker("osteoclast cells", "Labels", nullable=True)
        self.stain = ComboBox(label="stain", choices=["he", "trap"], value="he")
        self.min_nuclei = SpinBox(label="min nuclei per osteoclast", value=1, min=0, max=20)
        self.contact_um = FloatSpinBox(label="bone contact (µm)", value=3.0, min=0.0, max=100.0)
        self.interface_um = FloatSpinBox(label="tumour–bone interface (µm)", value=10.0, min=0.0, max=1000.0)
        self.status = Label(value="")
        self.table = Table(value=measurements_table({}))
        self.table.min_height = 300  # the whole table at a glance
        self.csv_path = FileEdit(label="CSV file", mode="w", filter="*.csv")
        self.export_button = PushButton(text="Export measurements (CSV)")
        super().__init__(widgets=[self.regions, self.nuclei, self.osteoclasts, self.cells, self.stain,
                                  self.min_nuclei, self.contact_um, self.interface_um, self.status, self.table,
                                  self.csv_path, self.export_button])
        self.measurements, self.notes = {}, {}
        self._watched, self._worker, self._pending = [], None, False
        self._timer = QTimer(self.native)  # goes with the widget
        self._timer.setSingleShot(True)
        self._timer.setInterval(_DEBOUNCE_MS)
        self._timer.timeout.connect(self.measure)
        for picker in (self.regions, self.nuclei, self.osteoclasts, self.cells):
            picker.changed.connect(self._watch)
        for control in (self.stain, self.min_nuclei, self.contact_um, self.interface_um):
            control.changed.connect(self.schedule)
        self.export_button.changed.connect(self.export_csv)
        self.native.destroyed.connect(lambda: self._follow([]))

    def bind(self, regions, nuclei=None, osteoclasts=None, cells=None, parameters=None):
        """Measure these layers, with the analysis' parameters (stain, min_nuclei, ...)."""
        self.reset_choices()  # the layers may be new
        parameters = parameters or {}
        for widget, key in ((self.stain, "stain"), (self.min_nuclei, "min_nuclei"), (self.contact_um, "contact_um"),
                            (self.interface_um, "interface_um")):
            if key in parameters:
                widget.value = parameters[key]
        self.regions.value, self.nuclei.value, self.osteoclasts.value, self.cells.value = (
            regions, nuclei, osteoclasts, cells)
        self.schedule()

    def _watch(self):
        """Follow the data events of the picked layers (and only those)."""
        emitters = []
        for picker in (self.regions, self.nuclei, self.osteoclasts, self.cells):
            layer = picker.value
            if layer is not None:
                names = ("data", "paint") if isinstance(layer, napari.layers.Labels) else ("data", "features")
                emitters += [getattr(layer.events, name) for name in names]
        self._follow(emitters)
        self.schedule()

    def _follow(self, emitters):
        for emitter in self._watched:
            emitter.disconnect(self.schedule)
        self._watched = emitters
        for emitter in emitters:
            emitter.connect(self.schedule)

    def schedule(self, *_):
        """Measure again once the edits pause."""
        self.status.value = "edited: measuring..."
        self._timer.start()

    def _inputs(self):
        """What remeasure_section needs, copied from the layers (edits go on while it runs)."""
        regions = self.regions.value
        if regions is None:
            raise bi.BoneImgError("pick the regions layer")
        kwargs = {"stain": self.stain.value, "min_nuclei": self.min_nuclei.value, "contact_um": self.contact_um.value,
                  "interface_um": self.interface_um.value}
        for name, layer in (("nuclei", self.nuclei.value), ("osteoclasts", self.osteoclasts.value)):
            if layer is not None:
                kwargs[name] = points_table(layer.data, layer.features)
        if self.cells.value is not None:
            kwargs["osteoclast_labels"] = np.array(self.cells.value.data)
        return np.array(regions.data), layer_spacing_um(regions), kwargs

    def measure(self):
        """Measure the picked layers in a worker thread; the table shows the result."""
        if self._worker is not None:  # measure again when this one ends
            self._pending = True
            return
        try:
            regions, spacing, kwargs = self._inputs()
        except bi.BoneImgError as exc:
            self.status.value = f"cannot measure: {exc}"
            return

        @thread_worker
        def work():
            return remeasure_section(regions, spacing, **kwargs)

        self._worker = work()
        self._worker.returned.connect(self._show)
        self._worker.errored.connect(lambda exc: setattr(self.status, "value", f"cannot measure: {exc}"))
        self._worker.finished.connect(self._done)
        self._worker.start()

    def _show(self, result):
        self.measurements, self.notes = result
        self.table.value = measurements_table(*result)
        self.status.value = "up to date"

    def _done(self):
        self._worker = None
        if self._pending:
            self._pending = False
            self.measure()

    def export_csv(self):
        """Write the table as CSV (atomically), with the layers and parameters it came from."""
        path = self.csv_path.value
        if not self.measurements or path == Path(".") or path.is_dir():  # "." is an empty FileEdit
            show_error("measure a section and choose a CSV file first")
            return
        regions = self.regions.value
        parameters = {"stain": self.stain.value, "min_nuclei": self.min_nuclei.value,
                      "contact_um": self.contact_um.value, "interface_um": self.interface_um.value,
                      "layers": {p.label: getattr(p.value, "name", None)
                                 for p in (self.regions, self.nuclei, self.osteoclasts, self.cells)}}
        save_table(path, measurements_table(self.measurements, self.notes),
                   source=regions.metadata.get("source"), parameters=parameters)
        show_info(f"measurements written to {path}")


class ExportAnnotationsWidget(Container):
    """Write an image with its corrected nuclei (labels) and cells (points) for training."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image_layer = _layer_picker("image", "Image")
        self.labels_layer = _layer_picker("nucleus labels", "Labels", nullable=True)
        self.points_layer = _layer_picker("cell points", "Points", nullable=True)
        self.out_dir = FileEdit(label="output folder", mode="d")
        self.file_name = LineEdit(label="name")
        self.export_button = PushButton(text="Export for training")
        self.status = Label(value="")
        super().__init__(widgets=[self.image_layer, self.labels_layer, self.points_layer, self.out_dir, self.file_name,
                                  self.export_button, self.status])
        self.image_layer.changed.connect(self._default_name)
        self.export_button.changed.connect(self.export)
        self._default_name()

    def _default_name(self):
        layer = self.image_layer.value
        if layer is not None:  # "tibia 3.ome.tif" -> "tibia 3"
            self.file_name.value = re.sub(r"(\.ome)?\.[A-Za-z]{2,4}$", "", layer.name)

    def export(self):
        """Write ``<name>.ome.tif``, ``<name>.labels.tif`` and ``<name>.points.csv``."""
        layer, labels, points = self.image_layer.value, self.labels_layer.value, self.points_layer.value
        try:
            if layer is None or self.out_dir.value == Path("."):  # "." is an empty FileEdit
                raise bi.BoneImgError("pick an image layer and an output folder")
            table = None if points is None else points_table(points.data, points.features)
            written = export_annotations(self.out_dir.value, self.file_name.value, image_from_layer(layer),
                                         labels=None if labels is None else np.asarray(labels.data), points=table)
        except bi.BoneImgError as exc:
            self.status.value = f"not written: {exc}"
            show_error(str(exc))
            return
        self.status.value = f"wrote {', '.join(p.name for p in written)}"
