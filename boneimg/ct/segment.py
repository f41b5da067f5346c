"""Bone segmentation of grey-value micro-CT and density calibration from phantom rods.

Segmentation is a Gaussian smoothing followed by one global threshold: by default half-way
between the grey-value peaks of background and bone (ISO-50, with the two classes split by
Otsu's threshold), which puts the surface at the half-height of the scanner-blurred edge and so
keeps bone volumes unbiased where Otsu's threshold alone leans towards the larger class; or
Otsu's threshold itself, a grey value given by the user, or a mineral density in mg HA/cm³
converted through a calibration. The
threshold and how it was chosen travel with the result, because thresholds move BV/TV and
connectivity more than anything else.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from ..errors import BoneImgError
from ..io.image import as_image

METHODS = ("iso50", "otsu", "multiotsu")
# Enough voxels for a stable histogram; larger volumes are subsampled with a stride.
_HISTOGRAM_VOXELS = 4_000_000
PADDING_SHARE = 0.01


@dataclass(frozen=True)
class DensityCalibration:
    """Linear map from grey value to mineral density, fitted on phantom rods.

    ``density_mg_cm3 = slope * grey + intercept``.

    Attributes
    ----------
    slope : float
        mg HA/cm³ per grey unit.
    intercept : float
        mg HA/cm³ at grey value 0.
    r_squared : float
        Coefficient of determination of the fit (1.0 for two rods).
    n_rods : int
    """

    slope: float
    intercept: float
    r_squared: float
    n_rods: int

    def to_density(self, grey):
        """Grey values (scalar or array) to mg HA/cm³."""
        return self.slope * np.asarray(grey, dtype=np.float64) + self.intercept

    def to_grey(self, density_mg_cm3):
        """Mineral density in mg HA/cm³ to the grey value that has it."""
        return (np.asarray(density_mg_cm3, dtype=np.float64) - self.intercept) / self.slope


def calibrate_density(rod_grey, rod_density_mg_cm3):
    """Fit grey value -> mineral density on two or more phantom rods (least squares line).

    Parameters
    ----------
    rod_grey : sequence of float
        Mean grey value of each rod (see :func:`rod_grey_values`).
    rod_density_mg_cm3 : sequence of float
        Known density of each rod in mg HA/cm³, in the same order.

    Returns
    -------
    DensityCalibration

    Raises
    ------
    BoneImgError
        Fewer than two rods, lengths that differ, non-finite values, rods that all share one
        grey value, or a density that falls as grey value rises.
    """
    grey = np.asarray(rod_grey, dtype=np.float64).ravel()
    density = np.asarray(rod_density_mg_cm3, dtype=np.float64).ravel()
    if grey.size != density.size:
        raise BoneImgError(
            f"rod_grey has {grey.size} values but rod_density_mg_cm3 has {density.size}; "
            "give one density per rod"
        )
    if grey.size < 2:
        raise BoneImgError(f"density calibration needs at least 2 phantom rods, got {grey.size}")
    if not (np.isfinite(grey).all() and np.isfinite(density).all()):
        raise BoneImgError("rod grey values and densities must be finite numbers")
    if np.ptp(grey) == 0:
        raise BoneImgError(f"all rods have the same grey value ({grey[0]:g}); no line can be fitted")
    slope, intercept = np.polyfit(grey, density, 1)
    if slope <= 0:
        raise BoneImgError(
            f"the fitted density falls as grey value rises (slope {slope:g} mg HA/cm³ per grey "
            "unit); check the rod order and that bone is bright in this volume"
        )
    residual = density - (slope * grey + intercept)
    spread = ((density - density.mean()) ** 2).sum()
    r_squared = 1.0 - (residual ** 2).sum() / spread if spread > 0 else 1.0
    return DensityCalibration(float(slope), float(intercept), float(r_squared), int(grey.size))


def rod_grey_values(image, rods):
    """Mean grey value inside each phantom rod.

    Parameters
    ----------
    image : Image or ndarray of shape (P, M, N) or (M, N)
    rods : ndarray of int, same shape
        Label image: 0 outside the rods, 1..n one label per rod.

    Returns
    -------
    ndarray of shape (n,)
        Mean grey value of rods 1..n.
    """
    data = np.asarray(as_image(image).data)
    rods = np.asarray(rods)
    if rods.shape != data.shape:
        raise BoneImgError(f"rods has shape {rods.shape} but the image has shape {data.shape}")
    labels = np.arange(1, int(rods.max()) + 1)
    present = np.isin(labels, rods)
    if not present.all():
        raise BoneImgError(f"rod labels {labels[~present].tolist()} are missing from the rod image")
    return np.asarray(ndi.mean(data.astype(np.float64), rods, labels))


@dataclass
class Segmentation:
    """A bone mask and how it was made.

    Attributes
    ----------
    bone : ndarray of bool
        True on bone voxels.
    threshold : float
        Grey value (of the smoothed volume) above which a voxel is bone; NaN when no threshold
        exists (a volume of one grey value).
    method : str
        "iso50", "otsu", "multiotsu", "user", "density", "binary input", or "none" (a
        volume of one grey value); "iso50 (otsu: ...)" when the peaks could not be found.
    smooth_sigma_um : float
        Gaussian sigma applied before thresholding (0 for binary input).
    threshold_mg_cm3 : float or None
        The threshold as a mineral density, when a calibration was given.
    notes : list of str
    """

    bone: np.ndarray
    threshold: float
    method: str
    smooth_sigma_um: float
    threshold_mg_cm3: float | None = None
    notes: list = field(default_factory=list)


def grey_values(data):
    """Grey values of a volume as float32, with notes on what had to be changed.

    Accepts bool, unsigned and signed integers (e.g. HU as int16) and floats; non-finite values
    (reconstruction masks outside the field of view) are set to the lowest finite value.
    """
    data = np.asarray(data)
    if data.dtype == bool:
        return data.astype(np.float32), []
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise BoneImgError(f"grey values must be integers or floats, got dtype {data.dtype}")
    grey = data.astype(np.float32)
    notes = []
    finite = np.isfinite(grey)
    if not finite.all():
        if not finite.any():
            raise BoneImgError("the volume holds no finite grey value")
        grey[~finite] = grey[finite].min()
        notes.append(f"{int((~finite).sum())} non-finite voxels set to the lowest grey value")
    return grey, notes


def segment_bone(image, *, voxel_size_um=None, threshold=None, threshold_mg_cm3=None,
                 calibration=None, method="iso50", smooth_sigma_um=None):
    """Segment bone in a grey-value micro-CT volume (or slice) by smoothing and one threshold.

    Parameters
    ----------
    image : Image or ndarray of shape (P, M, N) or (M, N)
        Grey values, bone bright: any integer or float dtype, signed HU included.
    voxel_size_um : float or sequence of float, optional
        Overrides the Image's spacing; required for a bare array.
    threshold : float, optional
        Grey value above which a voxel is bone (of the smoothed volume).
    threshold_mg_cm3 : float, optional
        Threshold as a mineral density; needs `calibration`.
    calibration : DensityCalibration, optional
    method : {"iso50", "otsu", "multiotsu"}
        Automatic threshold when none is given: half-way between the background and bone
        peaks of the histogram (classes split by Otsu), Otsu's two-class threshold, or the
        upper of three Otsu classes (for scans with air, soft tissue and bone). More than 1 %
        of voxels at exactly the lowest grey value (padding outside the reconstructed field of
        view) are left out of the histogram.
    smooth_sigma_um : float, optional
        Gaussian sigma in µm; default half the smallest voxel side (the scanner blur does the
        rest). 0 switches it off.

    Returns
    -------
    Segmentation
        A volume of only two grey values is taken as already segmented (method
        "binary input"): the brighter value is bone, nothing is smoothed.
    """
    img = as_image(image, pixel_size_um=voxel_size_um)
    spacing = img.require_spacing("bone segmentation")
    grey, notes = grey_values(img.data)
    result = segment_grey(grey, spacing, threshold=threshold, threshold_mg_cm3=threshold_mg_cm3,
                          calibration=calibration, method=method, smooth_sigma_um=smooth_sigma_um)
    result.notes[:0] = notes
    return result


def segment_grey(grey, spacing_um, *, threshold=None, threshold_mg_cm3=None, calibration=None,
                 method="iso50", smooth_sigma_um=None):
    """:func:`segment_bone` on a float array whose spacing is known (see there)."""
    if method not in METHODS:
        raise BoneImgError(f"method must be one of {METHODS}, got {method!r}")
    if threshold is not None and threshold_mg_cm3 is not None:
        raise BoneImgError("give either threshold (grey value) or threshold_mg_cm3, not both")
    if threshold_mg_cm3 is not None and calibration is None:
        raise BoneImgError(
            "threshold_mg_cm3 needs a density calibration: pass "
            "calibration=calibrate_density(rod_grey, rod_density_mg_cm3)"
        )
    if smooth_sigma_um is not None and not (np.isfinite(smooth_sigma_um) and smooth_sigma_um >= 0):
        raise BoneImgError(f"smooth_sigma_um must be >= 0 µm, got {smooth_sigma_um!r}")
    values = _distinct_values(grey)
    automatic = threshold is None and threshold_mg_cm3 is None
    if values is not None and len(values) == 1 and automatic:
        return Segmentation(np.zeros(grey.shape, bool), float("nan"), "none", 0.0, None,
                            [f"the volume holds a single grey value ({values[0]:g}): no bone can "
                             "be told from background"])
    if values is not None and len(values) == 2 and automatic:
        low, high = values
        return Segmentation(grey == high, float((low + high) / 2), "binary input", 0.0)

    sigma_um = 0.5 * min(spacing_um) if smooth_sigma_um is None else float(smooth_sigma_um)
    smoothed = grey
    if sigma_um > 0:
        smoothed = ndi.gaussian_filter(grey, [sigma_um / s for s in spacing_um])
    density = None
    if threshold is not None:
        chosen, how = float(threshold), "user"
    elif threshold_mg_cm3 is not None:
        chosen, how, density = float(calibration.to_grey(threshold_mg_cm3)), "density", float(threshold_mg_cm3)
    else:
        # a large share of voxels at exactly the lowest value is padding outside the
        # reconstructed field of view, not a tissue: it stays out of the histogram
        padding = grey == grey.min()
        sample = smoothed[~padding] if padding.mean() > PADDING_SHARE else smoothed.ravel()
        chosen, how = _automatic_threshold(sample, method)
    if calibration is not None and density is None:
        density = float(calibration.to_density(chosen))
    return Segmentation(smoothed > chosen, chosen, how, sigma_um, density)


def _distinct_values(grey):
    """The one or two distinct values of `grey`, or None when it has more."""
    low, high = float(grey.min()), float(grey.max())
    if low == high:
        return (low,)
    if np.all((grey == low) | (grey == high)):
        return (low, high)
    return None


def _automatic_threshold(values, method):
    """(threshold, method actually used) from the histogram of smoothed grey values (1-D)."""
    stride = max(1, int(np.ceil(values.size / _HISTOGRAM_VOXELS)))
    counts, edges = np.histogram(values[::stride], bins=1024)
    centres = (edges[:-1] + edges[1:]) / 2
    if method == "multiotsu":
        return float(filters.threshold_multiotsu(hist=(counts, centres), classes=3)[-1]), method
    otsu = float(filters.threshold_otsu(hist=(counts, centres)))
    if method == "otsu":
        return otsu, method
    density = ndi.gaussian_filter1d(counts.astype(float), 3)  # peaks of the histogram, not of its noise
    split = int(np.searchsorted(centres, otsu, side="right"))  # Otsu's lower class: up to `otsu`
    if not 0 < split < len(centres):
        return otsu, "iso50 (otsu: no background and bone peaks in the histogram)"
    low, high = np.argmax(density[:split]), split + np.argmax(density[split:])
    padded = np.pad(density, 1, constant_values=-np.inf)
    if not all(padded[i + 1] >= max(padded[i], padded[i + 2]) for i in (low, high)):
        return otsu, "iso50 (otsu: no background and bone peaks in the histogram)"
    return float((centres[low] + centres[high]) / 2), method
