"""Training targets on the network's working grid, from points and instance labels."""

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from ..histology.pixels import sample_bilinear, to_rgb8, white_level
from .datasets import CELL_TYPES

#: Standard deviation of the Gaussian drawn around each nucleus centre, µm.
CENTRE_SIGMA_UM = 1.0
#: Radius around a typed centre whose pixels are taught its cell type, µm.
TYPE_RADIUS_UM = 2.0


@dataclass(eq=False)
class Targets:
    """One image and its targets on the working grid (all arrays share the grid's shape).

    ``nucleus`` is 1 inside nuclei, 0 outside, -1 where unknown (no instance labels);
    ``distance`` is the distance to the nucleus boundary normalised to 1 at each nucleus'
    deepest point, -1 where unknown; ``cell_type`` indexes :data:`CELL_TYPES`, -1 where unknown.
    """

    name: str
    rgb: np.ndarray       # uint8 (M, N, 3)
    centre: np.ndarray    # float32, 1 exactly at each centre pixel
    nucleus: np.ndarray   # int8
    distance: np.ndarray  # float32
    cell_type: np.ndarray  # int8


def image_rgb8(image):
    """An Image's pixels as uint8 RGB, converted as nucleus segmentation converts them."""
    data = np.asarray(image.data)
    return to_rgb8(data, white_level(data))


def working_samples(start, stop, scale):
    """Indices of the working-grid pixels whose centres lie inside input pixels start..stop-1
    (`scale` working pixels per input pixel), and those centres in input pixels."""
    k = np.arange(math.ceil(start * scale - 0.5), math.ceil(stop * scale - 0.5))
    return k, (k + 0.5) / scale - 0.5


def resample_rgb(rgb8, scale, origin=(0, 0)):
    """uint8 RGB on the working grid, `scale` working pixels per input pixel.

    The block's first pixel is input pixel `origin` (row, column) of a larger image; the
    block gives the working pixels whose centres lie in it (:func:`working_samples`), so
    overlapping blocks of one image see the same samples. Bilinear, anti-aliased by a Gaussian
    when shrinking.
    """
    if scale == 1.0:
        return rgb8
    (_, rows), (_, cols) = (working_samples(o, o + n, scale) for o, n in zip(origin, rgb8.shape[:2]))
    img = rgb8.astype(np.float32)
    if scale < 1:
        sigma = (1 / scale - 1) / 2
        img = ndi.gaussian_filter(img, (sigma, sigma, 0), mode="mirror")
    return np.clip(np.rint(sample_bilinear(img, rows - origin[0], cols - origin[1])), 0, 255).astype(np.uint8)


def gaussian_centres(shape, xy, sigma_px):
    """Maximum over Gaussians of peak 1 at the pixels nearest to the centres (x, y)."""
    out = np.zeros(shape, np.float32)
    if len(xy) == 0:
        return out
    r = int(np.ceil(3 * sigma_px))
    offsets = np.arange(-r, r + 1)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma_px ** 2)).astype(np.float32)
    for x, y in np.rint(xy).astype(int):
        if not (0 <= y < shape[0] and 0 <= x < shape[1]):
            continue
        y0, y1, x0, x1 = max(0, y - r), min(shape[0], y + r + 1), max(0, x - r), min(shape[1], x + r + 1)
        patch = kernel[y0 - y + r: y1 - y + r, x0 - x + r: x1 - x + r]
        np.maximum(out[y0:y1, x0:x1], patch, out=out[y0:y1, x0:x1])
    return out


def boundary_distance(labels):
    """Distance to each nucleus' boundary (touching nuclei separated), 1 at its deepest pixel."""
    inner = (labels > 0) & ~find_boundaries(labels, mode="inner")
    distance = ndi.distance_transform_edt(inner).astype(np.float32)
    ids = np.arange(1, int(labels.max(initial=0)) + 1)
    if len(ids) == 0:
        return distance
    peak = np.zeros(len(ids) + 1, np.float32)
    peak[1:] = ndi.maximum(distance, labels, ids)
    norm = peak[labels]
    return np.divide(distance, norm, out=np.zeros_like(distance), where=norm > 0)


def make_targets(record, working_pixel_size_um, scale_jitter=1.0):
    """:class:`Targets` for an :class:`~boneimg.models.datasets.Annotated` image.

    `scale_jitter` multiplies the resampling factor (scale augmentation: 1.2 draws the image
    as if its nuclei were 20 % larger).
    """
    px = float(record.image.spacing_um[0])
    scale = px / working_pixel_size_um * scale_jitter
    rgb = resample_rgb(image_rgb8(record.image), scale)
    shape = rgb.shape[:2]
    xy = (np.asarray(record.centres(), float) + 0.5) * scale - 0.5
    centre = gaussian_centres(shape, xy, CENTRE_SIGMA_UM / working_pixel_size_um * scale_jitter)
    nucleus = np.full(shape, -1, np.int8)
    distance = np.full(shape, -1, np.float32)
    if record.labels is not None:
        # the nearest input pixel of each working pixel, on the grid resample_rgb samples
        rows, cols = (np.clip(np.rint(working_samples(0, n, scale)[1]).astype(int), 0, n - 1)
                      for n in record.labels.shape)
        labels = np.asarray(record.labels, np.int32)[np.ix_(rows, cols)]
        nucleus = (labels > 0).astype(np.int8)
        distance = boundary_distance(labels)
    cell_type = np.full(shape, -1, np.int8)
    if record.cell_types is not None:
        index = {t: i for i, t in enumerate(CELL_TYPES)}
        radius = TYPE_RADIUS_UM / working_pixel_size_um * scale_jitter
        for (x, y), t in zip(xy, record.cell_types):
            if t not in index:
                continue
            r = int(np.ceil(radius))
            cy, cx = int(round(y)), int(round(x))
            y0, y1, x0, x1 = max(0, cy - r), min(shape[0], cy + r + 1), max(0, cx - r), min(shape[1], cx + r + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            gy, gx = np.ogrid[y0:y1, x0:x1]
            disk = (gy - y) ** 2 + (gx - x) ** 2 <= radius ** 2
            cell_type[y0:y1, x0:x1][disk] = index[t]
    return Targets(record.name, rgb, centre, nucleus, distance, cell_type)
