"""Picture of the review workflow for the README: docs/review.png.

A synthetic TRAP section from the plugin's sample data, analysed with the section widget; the
result layers over it and the Measurements dock beside. Needs a display (``xvfb-run -a``)::

    xvfb-run -a python scripts/screenshot.py [OUT.png]
"""

import sys
import time
from pathlib import Path

import napari
from PIL import Image

from boneimg_napari._widgets import SectionWidget

OUT = Path(__file__).resolve().parents[1] / "docs" / "review.png"
SIZE = (1400, 860)  # window, pixels
COLOURS = 96  # a palette PNG keeps the picture small


def _wait(condition, timeout_s=300):
    app = napari.qt.get_qapp()
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the analysis did not finish")
        app.processEvents()
        time.sleep(0.05)


def main(out=OUT):
    viewer = napari.Viewer(title="boneimg: review a section")
    viewer.window.resize(*SIZE)
    (image, *truth) = viewer.open_sample("boneimg", "trap_section")
    for layer in truth:
        viewer.layers.remove(layer)
    widget = SectionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="boneimg section")
    widget.image_layer.value = image
    widget.run()
    _wait(lambda: widget.status.value == "done" and widget.review.status.value == "up to date")
    viewer.layers[f"{image.name} nuclei"].visible = False  # the centres show the nuclei
    viewer.reset_view()
    viewer.layers.selection.active = viewer.layers[f"{image.name} nucleus centres"]
    _wait(lambda: True)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(shot[..., :3]).quantize(COLOURS, dither=Image.Dither.NONE).save(out, optimize=True)
    viewer.close()
    print(f"{out}: {out.stat().st_size / 1000:.0f} kB")


if __name__ == "__main__":
    main(*sys.argv[1:])
