"""Cortical and trabecular compartments of a long bone, cortical geometry and perforations.

Volumes are (z, y, x) with the long axis of the bone along z, so every z slice is a cross
section (a 2-D slice is a volume of one slice). The compartments come from two envelopes:

- periosteal (outer) envelope: the bone closed with a ball of `envelope_closing_um` (bridging
  perforations and defects up to about twice that wide), holes filled slice by slice. Its inside
  is the total cross section, Tt.
- endosteal (inner) envelope, found slice by slice along rays cast from the centroid of the
  cross section: on each ray the cortex is the run of bone that starts at the periosteal
  envelope and goes inwards, across gaps narrower than `cortical_pore_um`. Rays where that run
  is shorter than `cortex_min_thickness_um` (a perforation, a defect) are left out, and the
  endosteal radius is a smooth Fourier series (up to the 3rd harmonic) fitted to the other
  rays with outliers rejected (:func:`.rays.robust_radius`), so trabeculae joining the cortex
  and local erosions do not move the envelope: it is the envelope expected from the intact
  cortex around them. A slice where fewer than half of the
  rays meet a cortex (trabecular bone only, or the cortex thinner than
  `cortex_min_thickness_um`) has no cortical compartment.

The cortical compartment lies between the two envelopes, the marrow compartment (marrow and
trabecular bone) inside the endosteal one.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .masks import CUBE, SLICE_FACES, closing, distance_inside, fill_slices
from .rays import N_RAYS, Rays, robust_radius

MIN_CORTEX_RAYS = 0.5  # fraction of rays that must meet a cortex for a slice to have one
ENVELOPE_SNAP_PX = 2  # the endosteal envelope takes in marrow this close to it (ray rounding)


@dataclass
class Compartments:
    """Periosteal and endosteal envelopes of a long bone.

    Attributes
    ----------
    periosteal : ndarray of bool, shape (P, M, N)
        Inside the periosteal envelope (total cross section).
    endosteal : ndarray of bool, shape (P, M, N)
        Inside the endosteal envelope: the marrow compartment, holding the trabecular bone.
        Equal to `periosteal` in slices without a cortex.
    cortex_slices : ndarray of bool, shape (P,)
        Slices with a cortical compartment.
    notes : list of str
    """

    periosteal: np.ndarray
    endosteal: np.ndarray
    cortex_slices: np.ndarray
    notes: list = field(default_factory=list)

    @property
    def cortical(self):
        """Between the periosteal and endosteal envelopes."""
        return self.periosteal & ~self.endosteal

    def label_image(self):
        """uint8 label volume: 0 outside the bone, 1 cortical, 2 marrow compartment."""
        labels = np.zeros(self.periosteal.shape, np.uint8)
        labels[self.endosteal] = 2
        labels[self.cortical] = 1
        return labels


def compartments(bone, spacing_um, *, envelope_closing_um=250.0, cortex_min_thickness_um=50.0,
                 cortical_pore_um=30.0):
    """Split a long bone into its periosteal and endosteal envelopes (see the module notes).

    Parameters
    ----------
    bone : ndarray of bool, shape (P, M, N)
        Bone mask; the long axis along the first axis.
    spacing_um : sequence of 3 float
        Voxel size (z, y, x) in µm.
    envelope_closing_um : float
        Radius of the ball that closes the periosteal surface over gaps, in µm.
    cortex_min_thickness_um : float
        A run of compact bone thinner than this is not cortex, in µm.
    cortical_pore_um : float
        Gaps in the cortex narrower than this (pores) do not end it, in µm.

    Returns
    -------
    Compartments
    """
    periosteal = fill_slices(closing(bone, envelope_closing_um, spacing_um))
    endosteal = periosteal.copy()
    cortex_slices = np.zeros(bone.shape[0], bool)
    for z in np.flatnonzero(periosteal.any(axis=(1, 2))):
        inner = _endosteal_slice(bone[z], periosteal[z], spacing_um[1:], cortex_min_thickness_um,
                                 cortical_pore_um)
        if inner is not None:
            endosteal[z] = inner
            cortex_slices[z] = True
    notes = []
    if periosteal.any() and not cortex_slices.any():
        notes.append("no cortical shell found: in no slice does compact bone at least "
                     "cortex_min_thickness_um thick surround the marrow; all bone is trabecular")
    return Compartments(periosteal, endosteal, cortex_slices, notes)


def _endosteal_slice(bone, periosteal, spacing_um, min_thickness_um, pore_um):
    """The endosteal envelope of one cross section, or None when it has no cortex."""
    rays = Rays(periosteal, spacing_um)
    if not rays.centred(periosteal):
        return None  # no centre to cast rays from (a crescent, or several bones)
    last = rays.outermost(rays.sample(periosteal))
    along = rays.sample(bone)
    # bone from the periosteal envelope inwards, gaps narrower than a pore bridged
    gap = max(1, int(round(pore_um / rays.step_um)))
    index = last[:, None] - np.arange(along.shape[1])[None, :]
    inward = np.where(index >= 0, np.take_along_axis(along, np.clip(index, 0, None), axis=1), False)
    inward = np.concatenate([np.ones((N_RAYS, gap), bool), inward], axis=1)
    bridged = ndi.binary_closing(inward, structure=np.ones((1, gap + 1), bool))[:, gap:]
    run = np.where(bridged.all(axis=1), rays.radii_um[last], np.argmin(bridged, axis=1) * rays.step_um)
    valid = run >= min_thickness_um
    if valid.mean() < MIN_CORTEX_RAYS:
        return None
    inner = robust_radius(rays.radii_um[last] - run, valid, min_scale_um=rays.step_um)
    marrow = periosteal & rays.inside(inner)
    if not marrow.any():
        return None  # a cortex surrounds marrow
    # reach the bone surface: no sliver of marrow left between the envelope and the cortex
    near = ndi.binary_dilation(marrow, np.ones((3, 3), bool), iterations=ENVELOPE_SNAP_PX)
    return marrow | (near & periosteal & ~bone)


def shell_thickness(comp, spacing_um):
    """Distance between the envelopes through each voxel of the cortical compartment, in µm.

    For a voxel of the cortical compartment, the in-slice distance to the nearest voxel outside
    the periosteal envelope plus the distance to the nearest voxel of the marrow compartment,
    less one pixel (both distances run between voxel centres). A wall n pixels thick measures
    n pixels. NaN outside the cortical compartment.

    Returns
    -------
    ndarray of float, shape (P, M, N)
    """
    cortical = comp.cortical
    thickness = np.full(cortical.shape, np.nan)
    pixel_um = (spacing_um[1] + spacing_um[2]) / 2
    for z in np.flatnonzero(comp.cortex_slices):
        if not cortical[z].any():
            continue
        to_outside = distance_inside(comp.periosteal[z], spacing_um[1:])
        to_marrow = distance_inside(~comp.endosteal[z], spacing_um[1:])
        wall = to_outside + to_marrow - pixel_um
        thickness[z][cortical[z]] = wall[cortical[z]]
    return thickness


def cortical_geometry(bone, comp, thickness, spacing_um):
    """Ct.Th, Ct.Ar, Tt.Ar, Ma.Ar and Ct.Ar/Tt.Ar over the slices with a cortex.

    Parameters
    ----------
    bone : ndarray of bool, shape (P, M, N)
    comp : Compartments
    thickness : ndarray of float, shape (P, M, N)
        :func:`shell_thickness`.
    spacing_um : sequence of 3 float

    Returns
    -------
    values : dict
        ``Ct.Th_um`` (mean envelope-to-envelope distance over the cortical compartment), and
        the mean per slice of ``Ct.Ar_mm2`` (cortical bone), ``Tt.Ar_mm2`` (inside the
        periosteal envelope), ``Ma.Ar_mm2`` (inside the endosteal envelope), ``Ct.Ar/Tt.Ar_pct``.
    notes : dict
        Reason per NaN value.
    """
    keys = ("Ct.Th_um", "Ct.Ar_mm2", "Tt.Ar_mm2", "Ma.Ar_mm2", "Ct.Ar/Tt.Ar_pct")
    slices = comp.cortex_slices
    if not slices.any():
        reason = ("no bone" if not bone.any() else
                  "no cortical shell found (see cortex_min_thickness_um): Ct.* measure a long-bone cortex")
        return dict.fromkeys(keys, float("nan")), dict.fromkeys(keys, reason)
    pixel_mm2 = spacing_um[1] * spacing_um[2] / 1e6
    cortical_bone = (bone & comp.cortical)[slices].sum(axis=(1, 2)) * pixel_mm2
    total = comp.periosteal[slices].sum(axis=(1, 2)) * pixel_mm2
    marrow = comp.endosteal[slices].sum(axis=(1, 2)) * pixel_mm2
    values = {
        "Ct.Th_um": float(np.nanmean(thickness[slices])),
        "Ct.Ar_mm2": float(cortical_bone.mean()),
        "Tt.Ar_mm2": float(total.mean()),
        "Ma.Ar_mm2": float(marrow.mean()),
        "Ct.Ar/Tt.Ar_pct": float(100 * cortical_bone.sum() / total.sum()),
    }
    return values, {}


@dataclass
class Perforations:
    """Holes through the cortical shell, from the marrow compartment to outside the bone.

    Attributes
    ----------
    labels : ndarray of int32, shape (P, M, N)
        0 elsewhere, 1..n one label per perforation.
    areas_mm2 : ndarray of float, shape (n,)
        Cross-section of each hole: its volume divided by the mean shell thickness it crosses.
    """

    labels: np.ndarray
    areas_mm2: np.ndarray

    @property
    def count(self):
        return int(self.areas_mm2.size)


def find_perforations(bone, comp, thickness, spacing_um, *, lesion=None):
    """Find the holes through the cortical compartment that join the marrow to the outside.

    A hole is a face-connected component of non-bone voxels in the cortical compartment; it
    perforates the cortex when it touches, within a slice, both the marrow compartment and the
    outside of the periosteal envelope. A channel two voxels wide is face-connected. Perforating
    pieces less than two voxels apart (one hole split by a voxel of bone) count as one.

    Parameters
    ----------
    bone : ndarray of bool, shape (P, M, N)
    comp : Compartments
        Envelopes of the intact bone (the reference's, when there is one).
    thickness : ndarray of float
        :func:`shell_thickness` of `comp`.
    spacing_um : sequence of 3 float
    lesion : ndarray of bool, optional
        Only holes that contain a lesion voxel count (with a reference: pores present at
        baseline are not perforations).

    Returns
    -------
    Perforations
    """
    holes = comp.cortical & ~bone
    labels, n = ndi.label(holes, structure=ndi.generate_binary_structure(3, 1))
    inner = np.unique(labels[ndi.binary_dilation(comp.endosteal, SLICE_FACES) & holes])
    outer = np.unique(labels[ndi.binary_dilation(~comp.periosteal, SLICE_FACES) & holes])
    through = np.intersect1d(inner, outer)
    if lesion is not None:
        through = np.intersect1d(through, np.unique(labels[lesion & holes]))
    perforating = np.isin(labels, through[through > 0])
    # pieces of one hole split by a voxel of bone or envelope are one perforation
    groups, count = ndi.label(ndi.binary_dilation(perforating, CUBE), structure=CUBE)
    labels = np.where(perforating, groups, 0).astype(np.int32)
    voxel_mm3 = float(np.prod(spacing_um)) / 1e9
    index = np.arange(1, count + 1)
    volumes_mm3 = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_mm3
    wall_mm = np.asarray(ndi.mean(np.nan_to_num(thickness), labels, index), dtype=float) / 1000.0
    areas = np.divide(volumes_mm3, wall_mm, out=np.full(count, np.nan), where=wall_mm > 0)
    return Perforations(labels, areas)
