"""The Image container: pixel data with its axes, physical spacing and provenance."""

from dataclasses import dataclass, field, replace
import math
import numbers

import numpy as np

from ..errors import BoneImgError

AXES = ("yx", "yxc", "zyx")
MODALITIES = ("brightfield", "ct", "radiograph")


def spacing_tuple(value, n_axes, *, name="pixel_size_um"):
    """Validate a physical spacing and return it as one float per spatial axis.

    Parameters
    ----------
    value : float or sequence of float
        Spacing in µm: one number (isotropic) or one per spatial axis, in axis order.
    n_axes : int
        Number of spatial axes (2 or 3).
    name : str
        Parameter name used in error messages.

    Returns
    -------
    tuple of float
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        values = (float(value),) * n_axes
    else:
        try:
            values = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise BoneImgError(
                f"{name} must be a number or {n_axes} numbers in µm, got {value!r}"
            ) from None
        if len(values) != n_axes:
            raise BoneImgError(
                f"{name} must have one value per spatial axis ({n_axes}), got {len(values)}: {value!r}"
            )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise BoneImgError(f"{name} must be positive and finite (µm), got {value!r}")
    return values


@dataclass(eq=False)
class Image:
    """Pixel data with the physical size of its pixels.

    Parameters
    ----------
    data : ndarray or dask.array.Array
        Pixel values; a dask array for files read lazily (big slide scans, large stacks).
    axes : {"yx", "yxc", "zyx"}
        Meaning of the axes of `data`; ``c`` holds colour channels (RGB or RGBA).
    spacing_um : tuple of float or None
        Pixel (voxel) size in µm, one value per spatial axis in axis order; None when the file
        does not record it.
    modality : {"brightfield", "ct", "radiograph"} or None
        What kind of image this is, when known.
    meta : dict
        Source metadata (format, calibration source, reader notes, ...).
    levels : tuple of arrays
        Pyramid levels of a multi-resolution file, full resolution first (``levels[0] is data``);
        empty for single-resolution images.
    path : str or None
        The file or folder the image was read from.
    """

    data: object
    axes: str
    spacing_um: tuple | None = None
    modality: str | None = None
    meta: dict = field(default_factory=dict)
    levels: tuple = ()
    path: str | None = None

    def __post_init__(self):
        if self.axes not in AXES:
            raise BoneImgError(f"axes must be one of {AXES}, got {self.axes!r}", path=self.path)
        if self.data.ndim != len(self.axes):
            raise BoneImgError(
                f"data has {self.data.ndim} dimensions but axes {self.axes!r} needs {len(self.axes)}",
                path=self.path,
            )
        if self.axes == "yxc" and self.data.shape[-1] not in (3, 4):
            raise BoneImgError(
                f"colour images need 3 (RGB) or 4 (RGBA) channels, got {self.data.shape[-1]}",
                path=self.path,
            )
        if self.spacing_um is not None:
            try:
                self.spacing_um = spacing_tuple(self.spacing_um, self.ndim_spatial, name="spacing_um")
            except BoneImgError as exc:  # name the file, as every other Image error does
                raise BoneImgError(exc.reason, path=self.path) from None
        if self.modality not in (None, *MODALITIES):
            raise BoneImgError(
                f"modality must be one of {MODALITIES} or None, got {self.modality!r}",
                path=self.path,
            )
        self.levels = tuple(self.levels)

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim_spatial(self):
        """Number of spatial axes (2 or 3)."""
        return len(self.axes.replace("c", ""))

    @property
    def spatial_shape(self):
        return tuple(s for s, a in zip(self.data.shape, self.axes) if a != "c")

    @property
    def is_lazy(self):
        """True when `data` is a dask array read from disk on demand."""
        return not isinstance(self.data, np.ndarray)

    @property
    def n_levels(self):
        """Number of resolution levels (1 for a single-resolution image)."""
        return max(1, len(self.levels))

    def level_spacing_um(self, level):
        """Pixel size in µm of pyramid `level`, from the full-resolution spacing and its shape."""
        if self.spacing_um is None:
            return None
        if level == 0:
            return self.spacing_um
        shape = [s for s, a in zip(self.levels[level].shape, self.axes) if a != "c"]
        return tuple(sp * full / lev for sp, full, lev in zip(self.spacing_um, self.spatial_shape, shape))

    def require_spacing(self, what="this measurement"):
        """Return `spacing_um`, or raise a BoneImgError saying how to supply it."""
        if self.spacing_um is None:
            raise BoneImgError(
                f"the pixel size is unknown and {what} needs it in µm; "
                "pass pixel_size_um=... (Python) or --pixel-size (command line)",
                path=self.path,
            )
        return self.spacing_um

    def with_spacing(self, spacing_um):
        """Return a copy with `spacing_um` set (a number for isotropic pixels or one per axis)."""
        spacing = spacing_tuple(spacing_um, self.ndim_spatial)
        meta = {**self.meta, "spacing_source": "user"}
        return replace(self, spacing_um=spacing, meta=meta)

    def __repr__(self):
        kind = "dask" if self.is_lazy else "numpy"
        spacing = "unknown" if self.spacing_um is None else "x".join(f"{s:g}" for s in self.spacing_um) + " µm"
        source = f", path={self.path!r}" if self.path else ""
        return (
            f"Image(shape={self.shape}, axes={self.axes!r}, dtype={self.dtype}, spacing={spacing}, "
            f"modality={self.modality!r}, {kind}, levels={self.n_levels}{source})"
        )


def as_image(image, *, pixel_size_um=None, axes=None):
    """Wrap an array as an Image, or apply a spacing override to an Image.

    Parameters
    ----------
    image : Image or array_like
        An Image, or an array of shape (M, N), (M, N, 3|4) or (P, M, N).
    pixel_size_um : float or sequence of float, optional
        Overrides the Image's spacing; required meaning for a bare array.
    axes : str, optional
        Axes of a bare array; inferred from its shape when omitted (a last axis of 3 or 4 is
        read as colour).
    """
    if isinstance(image, Image):
        return image if pixel_size_um is None else image.with_spacing(pixel_size_um)
    data = image if hasattr(image, "ndim") and hasattr(image, "dtype") else np.asarray(image)
    if axes is None:
        if data.ndim == 2:
            axes = "yx"
        elif data.ndim == 3:
            axes = "yxc" if data.shape[-1] in (3, 4) else "zyx"
        else:
            raise BoneImgError(f"expected a 2-D or 3-D array, got shape {data.shape}")
    n_spatial = len(axes.replace("c", ""))
    spacing = None if pixel_size_um is None else spacing_tuple(pixel_size_um, n_spatial)
    return Image(data, axes, spacing, meta={"spacing_source": "user" if spacing else None})
