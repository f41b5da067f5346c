"""Study widget: run :func:`boneimg.run_study` on a design CSV or a folder in the background."""

import webbrowser
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error

import boneimg as bi

_DESIGN_KINDS = {"design CSV": "r", "folder GROUP/ANIMAL/image": "d"}


class StudyWidget(Container):
    """Pick a design (CSV or folder) and an output folder, run the study, open its report."""

    def __init__(self):
        self.design_kind = ComboBox(label="design", choices=list(_DESIGN_KINDS), value="design CSV")
        self.design = FileEdit(label="design CSV or folder", mode="r", filter="*.csv")
        self.out_dir = FileEdit(label="output folder", mode="d")
        self.workers = SpinBox(label="worker processes", value=0, min=0, max=256,
                               tooltip="0: one per CPU core; 1: in this process")
        self.run_button = PushButton(text="Run study")
        self.status = Label(value="")
        self.report_button = PushButton(text="Open report", enabled=False)
        super().__init__(widgets=[self.design_kind, self.design, self.out_dir, self.workers, self.run_button,
                                  self.status, self.report_button])
        self.study = None
        self.design_kind.changed.connect(lambda kind: setattr(self.design, "mode", _DESIGN_KINDS[kind]))
        self.run_button.changed.connect(self.run)
        self.report_button.changed.connect(self.open_report)

    def run(self):
        design, out_dir = self.design.value, self.out_dir.value
        if Path(".") in (design, out_dir):  # "." is an empty FileEdit
            show_error("choose a design and an output folder first")
            return
        workers = self.workers.value or None

        # run_study reports no progress: the activity dock shows a busy bar
        @thread_worker(progress={"total": 0, "desc": "boneimg study"})
        def work():
            return bi.run_study(design, out_dir, workers=workers, quiet=True)

        self.status.value = "running..."
        self.run_button.enabled = self.report_button.enabled = False
        worker = work()
        worker.returned.connect(self._finished)
        worker.errored.connect(self._failed)
        worker.finished.connect(lambda: setattr(self.run_button, "enabled", True))
        worker.start()

    def _finished(self, study):
        self.study = study
        self.status.value = f"done: {len(study.images)} images analysed, {len(study.failures)} failed"
        self.report_button.enabled = True

    def _failed(self, exc):
        self.status.value = f"failed: {exc}"
        show_error(str(exc))

    def open_report(self):
        """Open report.html in the web browser."""
        if self.study is not None:
            webbrowser.open(self.study.report.as_uri())
