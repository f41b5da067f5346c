"""Conversions between boneimg objects and napari layer data tuples, in physical units."""

from pathlib import Path

import numpy as np
import pandas as pd
from napari.layers import Layer

import boneimg as bi
from boneimg.errors import BoneImgError
from boneimg.io.units import um_per_unit


def _provenance(image, **extra):
    return {"boneimg_version": bi.__version__, "source": image.path, "spacing_um": image.spacing_um,
            "modality": image.modality, **extra}


def _scale_kwargs(image):
    spatial = [a for a in image.axes if a != "c"]
    kwargs = {"axis_labels": tuple(spatial)}
    if image.spacing_um is not None:
        kwargs["scale"] = tuple(image.spacing_um)
        kwargs["units"] = ("µm",) * len(spatial)
    return kwargs


def image_layer(image, name=None):
    """A napari ``(data, kwargs, "image")`` tuple for a :class:`boneimg.Image`.

    The layer's scale is the pixel size in µm, so napari's scale bar and measurements are in µm;
    an uncalibrated image is shown in pixels and its metadata says the spacing is unknown.
    """
    kwargs = {
        "name": name or (Path(image.path).name if image.path else "image"),
        "rgb": image.axes == "yxc",
        "metadata": _provenance(image, meta=image.meta),
        **_scale_kwargs(image),
    }
    if image.n_levels > 1:
        kwargs["multiscale"] = True
        return list(image.levels), kwargs, "image"
    return image.data, kwargs, "image"


def labels_layer(labels, image, name, *, parameters=None, **extra):
    """A napari labels tuple aligned with `image` (same scale and units); `parameters` (the
    analysis' own record) go into the layer metadata."""
    kwargs = {"name": name, "metadata": _provenance(image, parameters=parameters), **_scale_kwargs(image), **extra}
    return labels, kwargs, "labels"


def spacing_from_layer_meta(meta, path):
    """Pixel size in µm from a napari layer's scale and units; BoneImgError if not physical."""
    factors = [um_per_unit(str(unit)) for unit in meta.get("units", ())]
    if not factors or any(f is None for f in factors):
        raise BoneImgError(
            "the layer has no physical scale (its units are pixels); open the image with a pixel "
            "size so that exported annotations carry it",
            path=path,
        )
    return tuple(float(s) * f for s, f in zip(meta["scale"], factors))


def points_layer(table, image, name, **extra):
    """A napari points tuple from a table with ``x``, ``y`` pixel columns; its other columns
    become features (the positions live in the layer data, where edits move them)."""
    coords = table[["y", "x"]].to_numpy(float) if len(table) else np.zeros((0, 2))
    features = table.drop(columns=["x", "y"]).reset_index(drop=True)
    if "label" in features:
        features["index"] = features["label"]
    kwargs = {"name": name, "features": features, "metadata": _provenance(image), **_scale_kwargs(image), **extra}
    return coords, kwargs, "points"


#: Face colour of each nucleus ``cell_type`` (the classes of boneimg's nucleus model).
CELL_TYPE_COLOURS = {"tumour": "magenta", "immune": "cyan", "stromal": "orange", "other": "lightgrey"}


def nucleus_points(table, image, name, *, size):
    """Nucleus centres as a points tuple: coloured by ``cell_type`` (:data:`CELL_TYPE_COLOURS`)
    where the table has that column, yellow otherwise."""
    if "cell_type" in table:
        colour = {"face_color_cycle": CELL_TYPE_COLOURS, "face_color": "cell_type"}
    else:
        colour = {"face_color": "yellow"}
    return points_layer(table, image, name, size=size, border_width=0, **colour)


def cell_type_legend():
    """The colours of :data:`CELL_TYPE_COLOURS` as rich text, a coloured dot before each type."""
    return " ".join(f'<span style="color:{colour}">&#9679;</span> {kind}' for kind, colour in CELL_TYPE_COLOURS.items())


def show_layers(layers, tuples):
    """Add layer data tuples to a layer list; a tuple named like an existing layer updates it,
    as napari does for a returned tuple: its data, then every keyword (scale, marker sizes,
    colours, features...). A points layer coloured by a feature the new result lacks is
    replaced in place, as napari cannot drop that colouring."""
    for data, kwargs, kind in tuples:
        layer = layers[kwargs["name"]] if kwargs["name"] in layers else None
        if layer is None:
            layers.append(Layer.create(data, kwargs, kind))
        elif _loses_colour_feature(layer, kwargs):
            index = layers.index(layer)
            layers.remove(layer)
            layers.insert(index, Layer.create(data, kwargs, kind))
        else:
            layer.data = data
            for key, value in kwargs.items():
                setattr(layer, key, value)


def _loses_colour_feature(layer, kwargs):
    """Whether a points layer's face is coloured by a feature that `kwargs` do not colour by."""
    coloured_by_feature = getattr(layer, "face_color_mode", "direct") != "direct"
    return coloured_by_feature and kwargs.get("face_color") not in kwargs.get("features", ())


def points_table(data, features=None):
    """Points (napari data coordinates, last axes y, x) as a table: ``x``, ``y`` (and ``z``) in
    pixels, then the features; x = column, origin at the centre of the top-left pixel."""
    coords = np.asarray(data, dtype=float).reshape(len(data), -1)
    table = pd.DataFrame({"x": coords[:, -1], "y": coords[:, -2]})
    if coords.shape[1] == 3:
        table["z"] = coords[:, 0]
    if features is not None and len(features) == len(table):
        extra = pd.DataFrame(features).drop(columns=["x", "y", "z", "index"], errors="ignore")
        table = pd.concat([table, extra.reset_index(drop=True)], axis=1)
    return table


def layer_spacing_um(layer):
    """Pixel size in µm of a napari layer, from its scale and units; BoneImgError if not physical."""
    return spacing_from_layer_meta({"scale": layer.scale, "units": layer.units}, layer.name)


def image_from_layer(layer):
    """A :class:`boneimg.Image` from a napari image layer, its spacing taken from scale and units."""
    from boneimg.io.image import Image

    data = layer.data[0] if layer.multiscale else layer.data
    axes = "yxc" if layer.rgb else ("zyx" if data.ndim == 3 else "yx")
    factors = [um_per_unit(str(unit)) for unit in layer.units]
    spacing = None
    if factors and all(f is not None for f in factors):
        spacing = tuple(float(s) * f for s, f in zip(layer.scale, factors))
    source = layer.metadata.get("source")
    return Image(data, axes, spacing, layer.metadata.get("modality"), {"napari_layer": layer.name}, path=source)
