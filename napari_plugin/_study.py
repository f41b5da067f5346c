"""Study widget: run :func:`boneimg.run_study` on a design CSV or a folder in the background."""

import queue
import threading
import webbrowser
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

import boneimg as bi
from boneimg.study.runner import StudyCancelled

_DESIGN_KINDS = {"design CSV": "r", "folder GROUP/ANIMAL/image": "d"}
CANCELLED = "cancelled — run again to resume"


@thread_worker(progress={"desc": "boneimg study"}, ignore_errors=True)  # errors: StudyWidget._failed
def study_progress(design, out_dir, workers, cancel):
    """Run the study, yielding ``(done, total)`` images as it goes; returns ``("returned", Study)``
    or ``("raised", exception)``.

    run_study reports through callbacks, so it runs in a thread of its own whose callbacks feed
    this generator; setting the `cancel` event stops it after the images in progress. Errors are
    returned, not raised: superqt turns a RuntimeError (StudyCancelled is one) raised by a
    generator into a warning and never reports the worker finished.
    """
    events = queue.SimpleQueue()

    def run():
        try:
            study = bi.run_study(design, out_dir, workers=workers, quiet=True, should_cancel=cancel.is_set,
                                 progress=lambda done, total: events.put(("progress", (done, total))))
            events.put(("returned", study))
        except BaseException as exc:  # handed to the worker, which reports it
            events.put(("raised", exc))

    threading.Thread(target=run, name="boneimg study", daemon=True).start()
    while True:
        kind, value = events.get()
        if kind != "progress":
            return kind, value
        yield value


class StudyWidget(Container):
    """Pick a design (CSV or folder) and an output folder, run the study with progress and a
    Cancel button (a cancelled study resumes when run again), open its report."""

    def __init__(self):
        self.design_kind = ComboBox(label="design", choices=list(_DESIGN_KINDS), value="design CSV")
        self.design = FileEdit(label="design CSV or folder", mode="r", filter="*.csv")
        self.out_dir = FileEdit(label="output folder", mode="d")
        self.workers = SpinBox(label="worker processes", value=0, min=0, max=256,
                               tooltip="0: one per CPU core; 1: in this process")
        self.run_button = PushButton(text="Run study")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip="stop after the images in progress; run again to resume")
        self.progress = ProgressBar(label="images", value=0, min=0, max=1)
        self.status = Label(value="")
        self.report_button = PushButton(text="Open report", enabled=False)
        super().__init__(widgets=[self.design_kind, self.design, self.out_dir, self.workers, self.run_button,
                                  self.cancel_button, self.progress, self.status, self.report_button])
        self.study = None
        self._cancel = threading.Event()
        self.design_kind.changed.connect(lambda kind: setattr(self.design, "mode", _DESIGN_KINDS[kind]))
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.report_button.changed.connect(self.open_report)
        self.native.destroyed.connect(lambda: self._cancel.set())  # a closed widget stops its study

    def run(self):
        design, out_dir = self.design.value, self.out_dir.value
        if Path(".") in (design, out_dir):  # "." is an empty FileEdit
            show_error("choose a design and an output folder first")
            return
        self._cancel.clear()
        self.status.value = "running..."
        self.run_button.enabled = self.report_button.enabled = False
        self.cancel_button.enabled = True
        worker = study_progress(design, out_dir, self.workers.value or None, self._cancel)
        worker.yielded.connect(self._progressed)
        worker.returned.connect(self._ended)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._idle)
        worker.start()

    def cancel(self):
        """Stop the study after the images in progress; their results are kept."""
        self._cancel.set()
        self.status.value = "cancelling after the images in progress..."

    def _progressed(self, done_total):
        done, total = done_total
        self.progress.max, self.progress.value = max(total, 1), done
        if not self._cancel.is_set():
            self.status.value = f"running: {done} of {total} images done"

    def _ended(self, outcome):
        kind, value = outcome
        if kind == "returned":
            self.study = value
            self.status.value = f"done: {len(value.images)} images analysed, {len(value.failures)} failed"
            self.report_button.enabled = True
        elif isinstance(value, StudyCancelled):
            self.status.value = CANCELLED
            show_info(str(value))
        else:
            self._failed(value)

    def _failed(self, exc):
        self.status.value = f"failed: {exc}"
        show_error(str(exc))

    def _idle(self):
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def open_report(self):
        """Open report.html in the web browser."""
        if self.study is not None:
            webbrowser.open(self.study.report.as_uri())
