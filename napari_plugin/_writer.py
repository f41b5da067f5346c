"""napari writers: labels as OME-TIFF with their pixel size, points as CSV tables."""

import numpy as np
import pandas as pd

from boneimg.io.write import save_labels, save_table

from ._layers import spacing_from_layer_meta


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
    coords = np.asarray(data, dtype=float).reshape(-1, len(spacing))
    # napari points are in data (pixel) coordinates; the last two axes are y, x
    table = pd.DataFrame({"x": coords[:, -1], "y": coords[:, -2],
                          "x_um": coords[:, -1] * spacing[-1], "y_um": coords[:, -2] * spacing[-2]})
    if len(spacing) == 3:
        table.insert(2, "z", coords[:, 0])
        table["z_um"] = coords[:, 0] * spacing[0]
    features = meta.get("features")
    if features is not None and len(features) == len(table):
        table = pd.concat([table, pd.DataFrame(features).reset_index(drop=True)], axis=1)
    save_table(path, table, source=meta.get("metadata", {}).get("source"), parameters={"layer": meta.get("name")})
    return [path]
