"""Cross sections of a long bone seen along rays cast from their centre.

A long-bone cross section is star-shaped around its centroid, so its envelopes are radius
functions of the angle. These helpers sample a slice along `N_RAYS` rays, fit smooth radius
functions robustly, and turn a radius function back into a mask.
"""

import numpy as np
from scipy import ndimage as ndi

N_RAYS = 360
THETA = np.linspace(0, 2 * np.pi, N_RAYS, endpoint=False)


class Rays:
    """Rays cast from the centroid of `region` (a 2-D mask) in a slice with `spacing_um`.

    Attributes
    ----------
    centre : (float, float)
        Centroid (row, column) in pixels.
    radii_um : ndarray of shape (S,)
        Distance of each sample from the centre, half a pixel apart.
    step_um : float
    """

    def __init__(self, region, spacing_um):
        self.shape = region.shape
        self.spacing_um = spacing_um
        self.centre = ndi.center_of_mass(region)
        self.step_um = min(spacing_um) / 2
        reach = np.hypot(*region.shape) * max(spacing_um)
        self.radii_um = np.arange(0.0, reach, self.step_um)
        self._coords = [self.centre[0] + np.sin(THETA)[:, None] * self.radii_um / spacing_um[0],
                        self.centre[1] + np.cos(THETA)[:, None] * self.radii_um / spacing_um[1]]

    def centred(self, region):
        """True when the centre pixel lies inside `region`, so the rays start inside it."""
        row, col = (int(round(c)) for c in self.centre)
        return bool(region[row, col])

    def sample(self, mask):
        """`mask` along the rays, shape (N_RAYS, S); False beyond the slice."""
        return ndi.map_coordinates(mask, self._coords, order=0, cval=0).astype(bool)

    def outermost(self, samples):
        """Index of the outermost True sample of each ray (-1 where a ray has none)."""
        last = samples.shape[1] - 1 - np.argmax(samples[:, ::-1], axis=1)
        return np.where(samples.any(axis=1), last, -1)

    def inside(self, radius_um):
        """Pixels closer to the centre than the radius function `radius_um` (one per ray)."""
        yy, xx = np.indices(self.shape)
        dy = (yy - self.centre[0]) * self.spacing_um[0]
        dx = (xx - self.centre[1]) * self.spacing_um[1]
        angle = np.arctan2(dy, dx) % (2 * np.pi)
        return np.hypot(dy, dx) < np.interp(angle, THETA, radius_um, period=2 * np.pi)


def robust_radius(radius_um, valid, *, min_scale_um, harmonics=3, cutoff=2.5, iterations=20):
    """Smooth radius function: Fourier series fitted with outliers rejected.

    Parameters
    ----------
    radius_um : ndarray of shape (N_RAYS,)
    valid : ndarray of bool, shape (N_RAYS,)
        Rays that have a radius at all.
    min_scale_um : float
        Floor of the robust SD (the sampling step): a perfect fit does not reject every ray.
    harmonics : int
        Highest harmonic: 3 follows an ellipse or a rounded triangle, not a bump narrower than
        about 60°.
    cutoff : float
        Rays farther than this many robust SDs from the fit are left out of the next fit.

    Returns
    -------
    ndarray of shape (N_RAYS,)
    """
    k = np.arange(1, harmonics + 1)[None, :] * THETA[:, None]
    design = np.hstack([np.ones((N_RAYS, 1)), np.cos(k), np.sin(k)])
    keep = valid.copy()
    fit = np.zeros(N_RAYS)
    for _ in range(iterations):
        coef = np.linalg.lstsq(design[keep], radius_um[keep], rcond=None)[0]
        fit = design @ coef
        residual = radius_um - fit
        scale = max(1.4826 * np.median(np.abs(residual[keep])), min_scale_um)
        kept = valid & (np.abs(residual) <= cutoff * scale)
        if kept.sum() < design.shape[1] or np.array_equal(kept, keep):
            break
        keep = kept
    return fit
