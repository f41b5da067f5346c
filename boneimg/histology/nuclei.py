"""Nucleus detection and instance segmentation in brightfield (H&E) sections.

Every size is a physical length in µm converted through the pixel size, and the work is done
on a fixed working grid (0.5 µm/px by default) so the same tissue scanned at 20x and 40x gives
the same nuclei. The classical path (stain, blob seeds, watershed, tiles for large images) is in
:mod:`boneimg.histology.nuclei_classical`, the trained model in :mod:`boneimg.models`.
"""

from dataclasses import dataclass, field
import math

import numpy as np
import pandas as pd

from .. import _validate
from .._version import __version__
from ..errors import BoneImgError
from ..io.image import Image, as_image
from . import stains as _stains
from .nuclei_classical import run_classical

METHODS = ("auto", "classical", "model")
TABLE_COLUMNS = ("label", "x", "y", "area_um2", "diameter_um", "hematoxylin_od")



@dataclass(eq=False)
class Nuclei:
    """Nuclei found in one image.

    Attributes
    ----------
    labels : ndarray of shape (M, N), int32
        0 = background, one id per nucleus (the ``label`` column of `table`). For tiled
        (lazy) input this is a disk-backed ``numpy.memmap``.
    table : pandas.DataFrame
        One row per nucleus: ``label``, ``x``, ``y`` (centroid in pixels, x = column,
        y = row), ``area_um2``, ``diameter_um`` (of the circle of equal area),
        ``hematoxylin_od`` (mean hematoxylin optical density in excess of the surrounding
        tissue's colour), and ``cell_type`` where a classifier ran.
    pixel_size_um : tuple of float
        Pixel size (row, column) of `labels` in µm.
    method : str
        The method that ran ("classical" or "model").
    parameters : dict
        Provenance: boneimg version, method, every parameter with its unit, the stain vectors
        used, the threshold reached and whether the image was tiled.
    """

    labels: np.ndarray
    table: pd.DataFrame
    pixel_size_um: tuple
    method: str
    parameters: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.table)

    @property
    def count(self):
        """Number of nuclei."""
        return len(self.table)

    def xy(self):
        """Centroids as an array of shape (n, 2) holding (x, y) pixels."""
        return self.table[["x", "y"]].to_numpy(float)

    def inside(self, mask):
        """Boolean per table row: is the nucleus centroid inside `mask` (bool array (M, N))?

        Counting tumour cells as nuclei inside the tumour region is
        ``nuclei.inside(regions == 3).sum()``.
        """
        mask = np.asarray(mask, bool)
        if mask.shape != tuple(self.labels.shape):
            raise BoneImgError(f"mask must have the labels' shape {tuple(self.labels.shape)}, got {mask.shape}")
        if len(self.table) == 0:
            return np.zeros(0, bool)
        rows = np.clip(np.rint(self.table["y"].to_numpy()).astype(int), 0, mask.shape[0] - 1)
        cols = np.clip(np.rint(self.table["x"].to_numpy()).astype(int), 0, mask.shape[1] - 1)
        return mask[rows, cols]

    def __repr__(self):
        return (f"Nuclei(count={self.count}, shape={tuple(self.labels.shape)}, method={self.method!r}, "
                f"pixel_size_um={self.pixel_size_um})")


@dataclass(frozen=True)
class _Params:
    diameter_um: tuple
    min_area_um2: float
    min_contrast: float
    min_separation_um: float
    split_depth: float
    smoothing_um: float
    background_um: float
    threshold: object
    working_pixel_size_um: float
    tile_size_px: int

    def as_dict(self):
        return {
            "diameter_um": list(self.diameter_um), "min_area_um2": self.min_area_um2,
            "min_contrast": self.min_contrast, "min_separation_um": self.min_separation_um,
            "split_depth": self.split_depth, "smoothing_um": self.smoothing_um,
            "background_um": self.background_um, "threshold": self.threshold,
            "working_pixel_size_um": self.working_pixel_size_um, "tile_size_px": self.tile_size_px,
        }


def model_weights_available():
    """True when a trained nucleus model ships with this installation."""
    from ..models.weights import DEFAULT_MODEL, shipped_models

    return DEFAULT_MODEL in shipped_models()


def segment_nuclei(image, *, pixel_size_um=None, method="auto", diameter_um=(5.0, 12.0), min_area_um2=12.0,
                   min_contrast=0.25, min_separation_um=2.5, split_depth=0.05, smoothing_um=0.5,
                   background_um=20.0, threshold="otsu", working_pixel_size_um=0.5, tile_size_px=3072,
                   stains=None, model=None, device="cpu"):
    """Detect and delineate cell nuclei in a brightfield (H&E) image.

    Parameters
    ----------
    image : Image or ndarray of shape (M, N, 3)
        RGB brightfield image: uint8, uint16 (any bit depth up to 16) or float in [0, 1].
        RGBA is composited on white; a greyscale (M, N) image is read as stain density (darker
        = more). A dask array, or an Image holding one, is processed in tiles.
    pixel_size_um : float, optional
        Pixel size in µm; required when `image` is an array or an uncalibrated Image, and
        overrides the Image's own otherwise.
    method : {"auto", "classical", "model"}
        "classical": stain separation, blob seeds and watershed; "model": a trained network
        (:mod:`boneimg.models`), which also fills the ``cell_type`` column; "auto": the model
        when one is installed or given and no classical `stains` are given, else classical. The
        model path uses only `pixel_size_um`, `tile_size_px`, `model` and `device`.
    diameter_um : (float, float)
        Smallest and largest nucleus diameter looked for, µm.
    min_area_um2 : float
        Smallest nucleus area kept, µm².
    min_contrast : float
        Strength a blob must reach to seed a nucleus: the scale-normalised Laplacian of
        Gaussian of the signal in units of the nuclear threshold (lower finds fainter nuclei).
    min_separation_um : float
        Smallest distance between two nucleus seeds, µm.
    split_depth : float
        Two touching pieces stay separate nuclei only when the signal dips between them by
        more than this (in units of the nuclear threshold); larger values split less.
    smoothing_um : float
        Standard deviation of the Gaussian smoothing of the hematoxylin image, µm.
    background_um : float
        Width of the white top-hat that removes slowly varying background stain, µm; 0 turns it
        off. Must exceed the largest nucleus.
    threshold : "otsu" or float
        Nuclear threshold T on the background-corrected hematoxylin optical density; "otsu"
        computes it for the whole image.
    working_pixel_size_um : float
        Pixel size of the grid the work is done on, µm; finer inputs are resampled to it
        (coarser ones are used as they are).
    tile_size_px : int
        Images with more than this squared pixels on the working grid are processed in tiles
        of this size plus an overlap (the model needs about 1 GB for a 3072 x 3072 tile).
    stains : StainVectors, optional
        Stain vectors whose first is the nuclear stain (hematoxylin) and second the other
        stain, e.g. ``estimate_section_stains(rgb, "trap")`` for a TRAP section (hematoxylin
        counterstain, TRAP red); the glass intensity is measured on this image. By default
        hematoxylin is unmixed against the image's own tissue colour, which suits H&E.

    model : str or os.PathLike, optional
        Name of a shipped model or path of a model file (``.pt`` with its ``.json``), e.g. one
        fine-tuned with ``boneimg train --from``; default the shipped ``nuclei_he``.
    device : str
        torch device for the model ("cpu", "cuda").

    Returns
    -------
    Nuclei

    Raises
    ------
    BoneImgError
        Unknown pixel size, unsupported image shape or dtype, a bad parameter, or method
        "model" without installed weights.

    Examples
    --------
    >>> import boneimg as bi
    >>> from boneimg.sample_data.sections import he_section
    >>> nuclei = bi.segment_nuclei(he_section((256, 256), 0.5).image)
    >>> list(nuclei.table.columns[:4])
    ['label', 'x', 'y', 'area_um2']
    """
    if method not in METHODS:
        raise BoneImgError(f"method must be one of {METHODS}, got {method!r}")
    use_model = method == "model" or (method == "auto" and stains is None
                                       and (model is not None or model_weights_available()))
    if method == "model" and model is None and not model_weights_available():
        raise BoneImgError("method='model' needs trained nucleus-model weights and none are installed; give model=PATH "
                           "or use method='classical'")
    params = _check_params(diameter_um, min_area_um2, min_contrast, min_separation_um, split_depth, smoothing_um,
                           background_um, threshold, working_pixel_size_um, tile_size_px)
    if stains is not None and (not isinstance(stains, _stains.StainVectors) or stains.names[0] != "hematoxylin"):
        raise BoneImgError(f"stains must be StainVectors with hematoxylin first, got {stains!r}")
    img = _as_input(image, pixel_size_um)
    spacing = img.require_spacing("nucleus segmentation")
    if abs(spacing[0] - spacing[1]) > 0.02 * max(spacing):
        raise BoneImgError(f"nucleus segmentation needs square pixels, got {spacing[0]:g} x {spacing[1]:g} µm",
                           path=img.path)
    px = float(spacing[0])
    if use_model:
        from ..models.inference import segment
        from ..models.weights import DEFAULT_MODEL

        labels, table, info = segment(img, px, model=DEFAULT_MODEL if model is None else model,
                                      tile_size_px=params.tile_size_px, device=device)
        parameters = {"boneimg_version": __version__, "function": "segment_nuclei", "method": "model",
                      "input": img.path, "pixel_size_um": px, "tile_size_px": params.tile_size_px, **info}
        return Nuclei(labels, table, (px, px), "model", parameters)
    labels, table, info = run_classical(img, px, params, stains)
    parameters = {
        "boneimg_version": __version__,
        "function": "segment_nuclei",
        "method": "classical",
        "input": img.path,
        "pixel_size_um": px,
        **params.as_dict(),
        **info,
    }
    return Nuclei(labels, table, (px, px), "classical", parameters)


def _check_params(diameter_um, min_area_um2, min_contrast, min_separation_um, split_depth, smoothing_um,
                  background_um, threshold, working_pixel_size_um, tile_size_px):
    try:
        dmin, dmax = (float(d) for d in diameter_um)
    except (TypeError, ValueError):
        raise BoneImgError(f"diameter_um must be two numbers (smallest, largest) in µm, got {diameter_um!r}") from None
    if not (0 < dmin <= dmax < 500):
        raise BoneImgError(f"diameter_um must satisfy 0 < smallest <= largest < 500 (µm), got {diameter_um!r}")
    background = _validate.number("background_um", background_um)
    if 0 < background <= dmax:
        raise BoneImgError(
            f"background_um must exceed the largest diameter ({dmax:g} µm) or be 0, got {background_um!r}")
    if not (threshold == "otsu" or (isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
                                    and math.isfinite(threshold) and threshold > 0)):
        raise BoneImgError(f"threshold must be 'otsu' or an optical density > 0, got {threshold!r}")
    if not (isinstance(tile_size_px, (int, np.integer)) and not isinstance(tile_size_px, bool) and tile_size_px >= 128):
        raise BoneImgError(f"tile_size_px must be an integer >= 128, got {tile_size_px!r}")
    return _Params(
        (dmin, dmax), _validate.number("min_area_um2", min_area_um2), _validate.number("min_contrast", min_contrast),
        _validate.number("min_separation_um", min_separation_um), _validate.number("split_depth", split_depth),
        _validate.number("smoothing_um", smoothing_um), background, threshold if threshold == "otsu" else float(threshold),
        _validate.number("working_pixel_size_um", working_pixel_size_um, strict=True), int(tile_size_px))


def _as_input(image, pixel_size_um):
    if isinstance(image, Image):
        img = image if pixel_size_um is None else image.with_spacing(pixel_size_um)
    else:
        data = image if hasattr(image, "ndim") and hasattr(image, "dtype") else np.asarray(image)
        if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
            raise BoneImgError(f"expected an RGB image of shape (M, N, 3) (or RGBA, or greyscale (M, N)), "
                               f"got shape {data.shape}")
        img = as_image(data, pixel_size_um=pixel_size_um, axes="yx" if data.ndim == 2 else "yxc")
    if img.axes not in ("yx", "yxc"):
        raise BoneImgError(f"nucleus segmentation needs a 2-D image (axes 'yxc' or 'yx'), got axes {img.axes!r}",
                           path=img.path)
    if img.dtype.kind not in "uf" and img.dtype != bool:
        raise BoneImgError(f"expected an image of unsigned integers or floats, got dtype {img.dtype}", path=img.path)
    if min(img.spatial_shape) < 1:
        raise BoneImgError(f"the image is empty (shape {img.shape})", path=img.path)
    return img
