"""Lesions without a reference: deviations from the bone expected from the bone itself.

With no baseline or contralateral scan, each lesion type is flagged against an expectation
estimated from the same bone:

- expected periosteal envelope: in each cross section with a cortex, the outer radius of the
  bone along rays from the centre (:mod:`.rays`), fitted by a smooth Fourier series up to the
  3rd harmonic with outlying rays left out: outgrowths and defects do not move it;
- cortical loss: the expected cortex (between the expected periosteal envelope and the
  endosteal one, which :mod:`.cortex` draws across defects from the intact cortex) that is not
  bone, with the one-voxel tolerance band of the reference mode;
- trabecular loss: marrow inside the zone that holds trabecular bone (the trabecular bone closed
  with a ball of `trabecular_zone_um`) whose local spacing (Tb.Sp, the diameter of the largest
  sphere in the marrow that holds the voxel, :func:`boneimg.ct.thickness.local_thickness`) is
  more than `void_factor` times the zone's typical spacing (the median of the marrow that is
  not void): a void where trabeculae are expected. The bone lost there is estimated as the void
  volume times the BV/TV of the rest of the zone;
- intramedullary new bone: bone in the marrow compartment thick enough to hold a ball of
  `blastic_min_thickness_um` diameter, far thicker than trabeculae (with the bone within two
  voxels of it: its rough rim);
- periosteal new bone: bone outside the expected periosteal envelope.

These are estimates: the reference mode measures the lesions themselves.
"""

from dataclasses import dataclass, field

import numpy as np

from .cortex import ENVELOPE_SNAP_PX
from .masks import closing, difference, dilate, erode, opening, remove_small
from .rays import Rays, robust_radius
from .thickness import local_thickness


@dataclass
class ExpectedChanges:
    """Lesions flagged against the bone's own expectation.

    Attributes
    ----------
    cortical_loss : ndarray of bool
        Missing bone inside the expected cortical compartment.
    trabecular_voids : ndarray of bool
        Marrow voids where trabecular bone is expected.
    expected_bv_tv : float
        BV/TV (fraction) of the trabecular zone outside the voids; NaN without trabecular bone.
    marrow_new_bone : ndarray of bool
        Intramedullary new bone.
    periosteal_new_bone : ndarray of bool
        New bone outside the expected periosteal envelope.
    expected_periosteal : ndarray of bool
        The expected periosteal envelope (its volume normalises the lesion class); the
        periosteal envelope itself in slices without a cortex.
    void_diameter_um : float
        Smallest local spacing of a trabecular void; NaN without trabecular bone.
    notes : list of str
    """

    cortical_loss: np.ndarray
    trabecular_voids: np.ndarray
    expected_bv_tv: float
    marrow_new_bone: np.ndarray
    periosteal_new_bone: np.ndarray
    expected_periosteal: np.ndarray
    void_diameter_um: float
    notes: list = field(default_factory=list)


def expected_changes(bone, comp, spacing_um, *, min_voxels, void_factor=1.8, trabecular_zone_um=300.0,
                     blastic_min_thickness_um=120.0):
    """Flag lesions in a bone without a reference (see the module notes).

    Parameters
    ----------
    bone : ndarray of bool, shape (P, M, N)
    comp : Compartments
        Envelopes of the same bone.
    spacing_um : sequence of 3 float
    min_voxels : int
        Smaller connected components are not lesions.
    void_factor : float
        A trabecular void has a local spacing this many times the zone's typical spacing.
    trabecular_zone_um : float
        Radius of the ball that closes the trabecular bone into the zone where trabeculae are
        expected (voids larger than this are not bridged), in µm.
    blastic_min_thickness_um : float
        Bone in the marrow thicker than this is new (blastic) bone, in µm.

    Returns
    -------
    ExpectedChanges
    """
    notes = []
    expected_periosteal = expected_envelope(bone, comp, spacing_um)
    periosteal_new = difference(bone, expected_periosteal, min_voxels)
    expected_cortex = expected_periosteal & ~comp.endosteal & comp.cortex_slices[:, None, None]
    cortical_loss = difference(expected_cortex, bone, min_voxels)
    trabecular = bone & comp.endosteal
    # the opening misses the rough rim of new bone: take the bone within two voxels of it too
    thick = opening(trabecular, blastic_min_thickness_um / 2, spacing_um)
    marrow_new = remove_small(trabecular & dilate(thick, 2 * max(spacing_um), spacing_um), min_voxels)

    # the zone grows from trabeculae, not from cortex fragments within the envelope's 2-pixel
    # tolerance (see boneimg.ct.cortex)
    inner = erode(comp.endosteal, ENVELOPE_SNAP_PX * max(spacing_um[1:]), spacing_um)
    seeds = trabecular & ~marrow_new & inner
    zone = closing(seeds, trabecular_zone_um, spacing_um) & comp.endosteal
    marrow = zone & ~bone
    voids = np.zeros_like(bone)
    void_diameter = expected_bv_tv = float("nan")
    if marrow.any() and trabecular[zone].any():
        spacing_map = local_thickness(marrow, spacing_um, roi=zone)  # Tb.Sp at every marrow voxel
        void_diameter = void_factor * _typical(spacing_map[marrow], void_factor)
        voids = remove_small(marrow & (spacing_map > void_diameter), min_voxels)
        rest = zone & ~voids
        expected_bv_tv = float(trabecular[rest].mean())
    if not trabecular.any():
        notes.append("no trabecular bone in the marrow compartment: trabecular loss not assessed")
    return ExpectedChanges(cortical_loss, voids, expected_bv_tv, marrow_new, periosteal_new,
                           expected_periosteal, void_diameter, notes)


def expected_envelope(bone, comp, spacing_um):
    """The smooth periosteal envelope expected in each slice with a cortex (see module notes)."""
    expected = comp.periosteal.copy()
    for z in np.flatnonzero(comp.cortex_slices):
        rays = Rays(comp.periosteal[z], spacing_um[1:])
        last = rays.outermost(rays.sample(bone[z]))
        fit = robust_radius(rays.radii_um[last], last >= 0, min_scale_um=rays.step_um)
        # the surface lies half a sample beyond the outermost bone sample
        expected[z] = rays.inside(fit + rays.step_um / 2)
    return expected


def _typical(spacing, factor, iterations=20):
    """Median spacing of the marrow that is not void: the fixed point of "median of the values
    below `factor` times the median", from the 25th percentile up, so a void that fills much of
    the zone does not raise the yardstick it is measured against."""
    typical = float(np.percentile(spacing, 25))
    for _ in range(iterations):
        updated = float(np.median(spacing[spacing <= factor * typical]))
        if updated == typical:
            break
        typical = updated
    return typical
