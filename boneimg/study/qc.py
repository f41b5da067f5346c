"""QC overlays: each input image with what the analysis found drawn on it, as a small JPEG."""

import math

import imagecodecs
import numpy as np

# colour of each kind of finding (RGB)
COLOURS = {
    "bone": (255, 215, 0),
    "tumour": (0, 200, 0),
    "lytic": (255, 0, 0),
    "blastic": (0, 120, 255),
    "osteoclast": (255, 0, 255),
}
_FILL_ALPHA = 0.35  # lesions and tumour are tinted as well as outlined


def draw_overlay(image, result, *, max_side=1024):
    """Draw an analysis result over its image.

    Draws whichever of these the result has: ``regions`` (bone and tumour outlined), ``bone``
    (outlined), ``lesions`` (1 lytic in red, 2 blastic in blue, tinted and outlined) and
    ``osteoclasts`` (a table with ``x``, ``y`` in pixels, drawn as magenta dots). A volume is
    shown at the slice with the most lesion voxels, or its middle slice.

    Parameters
    ----------
    image : Image
        The analysed image.
    result : object
        The analysis result.
    max_side : int
        The picture is subsampled to at most this many pixels along its longer side.

    Returns
    -------
    ndarray of shape (M, N, 3), uint8
    """
    from skimage.draw import disk
    from skimage.segmentation import find_boundaries

    layers = _layers(result)
    plane = _plane(image, layers)
    data = image.data[plane] if plane is not None else image.data
    step = max(1, math.ceil(max(data.shape[:2]) / max_side))
    rgb = _as_rgb(np.asarray(data[::step, ::step]))
    for mask, colour, fill in layers:
        mask = np.asarray(mask[plane] if plane is not None else mask)[::step, ::step]
        if fill:
            rgb[mask] = (1 - _FILL_ALPHA) * rgb[mask] + _FILL_ALPHA * np.array(colour)
        rgb[find_boundaries(mask, mode="inner")] = colour
    cells = getattr(result, "osteoclasts", None)
    if plane is None and cells is not None and len(cells):
        for x, y in zip(cells["x"], cells["y"]):
            rr, cc = disk((y / step, x / step), 3, shape=rgb.shape[:2])
            rgb[rr, cc] = COLOURS["osteoclast"]
    return rgb.astype(np.uint8)


def jpeg_bytes(rgb):
    """Encode an RGB uint8 picture as JPEG without chroma subsampling, so thin coloured outlines
    stay sharp; noisy grey images make PNGs about 6 times larger."""
    return imagecodecs.jpeg8_encode(np.ascontiguousarray(rgb), level=90, subsampling="444")


def _layers(result):
    """(boolean mask, colour, tinted) for each finding the result holds."""
    layers = []
    regions = getattr(result, "regions", None)
    if regions is not None:
        layers += [(regions == 1, COLOURS["bone"], False), (regions == 3, COLOURS["tumour"], True)]
    bone = getattr(result, "bone", None)
    if bone is not None:
        layers.append((np.asarray(bone, bool), COLOURS["bone"], False))
    lesions = getattr(result, "lesions", None)
    if lesions is not None:
        layers += [(lesions == 1, COLOURS["lytic"], True), (lesions == 2, COLOURS["blastic"], True)]
    return layers


def _plane(image, layers):
    """Index of the slice to show for a volume (None for 2-D images)."""
    if image.axes != "zyx":
        return None
    lesion_voxels = sum(mask.sum(axis=(1, 2)) for mask, colour, fill in layers if fill)
    if np.any(lesion_voxels):
        return int(np.argmax(lesion_voxels))
    return image.shape[0] // 2


def _as_rgb(data):
    """Scale an image plane to float RGB 0..255 for drawing."""
    if data.ndim == 3:
        data = data[..., :3]  # drop alpha
        if data.dtype == np.uint8:
            return data.astype(np.float32)
    values = data.astype(np.float32)
    low, high = np.percentile(values, [0.5, 99.5])
    grey = np.clip((values - low) / max(high - low, 1e-12), 0, 1) * 255
    return grey if grey.ndim == 3 else np.repeat(grey[..., None], 3, axis=-1)
