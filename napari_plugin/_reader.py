"""napari reader: every format `boneimg.load` reads, shown at its physical scale in µm."""

from pathlib import Path

import boneimg as bi
from boneimg.io.slices import slice_files


def get_reader(path):
    """Return a reader for `path` (file, folder of slices, or a list of them), or None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        return None
    for p in map(Path, paths):
        if p.is_dir():
            try:
                slice_files(p)
            except bi.BoneImgError:
                return None
    return read_layers


def read_layers(path):
    """Read one or more paths into napari image layer tuples."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [image_layer(bi.load(p)) for p in paths]


def image_layer(image, name=None):
    """A napari ``(data, kwargs, "image")`` tuple for a :class:`boneimg.Image`.

    The layer's scale is the pixel size in µm, so napari's scale bar and measurements are in µm;
    an uncalibrated image is shown in pixels and its metadata says the spacing is unknown.
    """
    spatial = [a for a in image.axes if a != "c"]
    kwargs = {
        "name": name or (Path(image.path).name if image.path else "image"),
        "rgb": image.axes == "yxc",
        "axis_labels": tuple(spatial),
        "metadata": {"boneimg_version": bi.__version__, "source": image.path, "spacing_um": image.spacing_um,
                     "modality": image.modality, "meta": image.meta},
    }
    if image.spacing_um is not None:
        kwargs["scale"] = tuple(image.spacing_um)
        kwargs["units"] = ("µm",) * len(spatial)
    if image.n_levels > 1:
        kwargs["multiscale"] = True
        data = list(image.levels)
    else:
        data = image.data
    return data, kwargs, "image"
