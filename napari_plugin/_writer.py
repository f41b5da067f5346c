"""napari writers: labels as OME-TIFF with their pixel size, points as CSV tables."""

import numpy as np

from boneimg.io.write import save_labels, save_table

from ._layers import points_table, spacing_from_layer_meta


def write_labels(path, data, meta):
    """Write a labels layer as OME-TIFF carrying its pixel size in µm."""
    spacing = spacing_from_layer_meta(meta, path)
    labels = np.asarray(data[0] if isinstance(data, list) else data)
    save_labels(path, labels, spacing, source=meta.get("metadata", {}).get("source"),
                parameters={"layer": meta.get("name")})
    return [path]


def write_points(path, data, meta):
    """Write a points layer as CSV: ``x``, ``y`` in pixels, ``x_um``, ``y_um``, and its features.

    This is the point format boneimg reads back for corrections and training (origin at the
    centre of the top-left pixel, x = column, y = row).
    """
    spacing = spacing_from_layer_meta(meta, path)
    table = points_table(data, meta.get("features"))
    axes = "xyz"[:len(spacing)]
    for i, axis in enumerate(axes):  # spacing is (z,) y, x
        table.insert(len(axes) + i, f"{axis}_um", table[axis] * spacing[-1 - i])
    save_table(path, table, source=meta.get("metadata", {}).get("source"), parameters={"layer": meta.get("name")})
    return [path]
