"""napari reader: every format `boneimg.load` reads, shown at its physical scale in µm."""

from pathlib import Path

import boneimg as bi
from boneimg.io.load import folder_kind

from ._layers import image_layer


def get_reader(path):
    """Return a reader for `path` (file, folder of slices, or a list of them), or None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        return None
    for p in map(Path, paths):
        if p.is_dir():
            try:
                folder_kind(p)
            except bi.BoneImgError:
                return None
    return read_layers


def read_layers(path):
    """Read one or more paths into napari image layer tuples."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [image_layer(bi.load(p)) for p in paths]
