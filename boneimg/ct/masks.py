"""Binary mask operations in physical units for micro-CT volumes.

Morphology with a ball whose radius is given in µm is done through exact Euclidean distance
transforms (``scipy.ndimage.distance_transform_edt`` with the voxel spacing as sampling), so it
costs the same for any radius and is exact for anisotropic voxels. Volumes are (z, y, x) with the
long axis of the bone along z; a 2-D slice is passed as a volume of one slice.

Conventions: dilation adds every voxel within ``radius_um`` of the mask (closed ball); erosion
keeps the voxels farther than ``radius_um`` from every voxel outside the mask. The array border
counts as neither, so bone cut by the field of view is not eroded from the cut.
"""

import math

import numpy as np
from scipy import ndimage as ndi

# face-connected neighbours within a slice only: hole filling and labelling per cross-section
SLICE_FACES = np.zeros((3, 3, 3), bool)
SLICE_FACES[1] = ndi.generate_binary_structure(2, 1)
CUBE = ndi.generate_binary_structure(3, 3)


def distance_inside(mask, spacing_um):
    """Distance in µm from each voxel of `mask` to the nearest voxel outside it (0 outside).

    A mask without any voxel outside it gets ``inf`` everywhere inside.
    """
    if mask.all():
        return np.full(mask.shape, np.inf)
    return ndi.distance_transform_edt(mask, sampling=spacing_um)


def dilate(mask, radius_um, spacing_um):
    """Voxels within `radius_um` of `mask` (ball dilation)."""
    if not mask.any():
        return np.zeros_like(mask)
    return distance_inside(~mask, spacing_um) <= radius_um


def erode(mask, radius_um, spacing_um):
    """Voxels of `mask` farther than `radius_um` from every voxel outside it (ball erosion)."""
    return distance_inside(mask, spacing_um) > radius_um


def opening(mask, radius_um, spacing_um):
    """Union of the balls of radius `radius_um` that fit inside `mask`."""
    return dilate(erode(mask, radius_um, spacing_um), radius_um, spacing_um)


def closing(mask, radius_um, spacing_um, *, pad_axes=(1, 2)):
    """Ball closing; `pad_axes` are padded with background so the ball can pass around the object.

    Axes not in `pad_axes` (by default z, the long axis) are not padded: the object is taken to
    continue beyond the field of view there.
    """
    pad = [(0, 0)] * mask.ndim
    for axis in pad_axes:
        pad[axis] = (math.ceil(radius_um / spacing_um[axis]) + 1,) * 2
    padded = np.pad(mask, pad)
    closed = erode(dilate(padded, radius_um, spacing_um), radius_um, spacing_um)
    return closed[tuple(slice(before, before + n) for (before, _), n in zip(pad, mask.shape))]


def fill_slices(mask):
    """Fill the holes of every (y, x) cross-section of a (z, y, x) mask separately."""
    return ndi.binary_fill_holes(mask, structure=SLICE_FACES)


def remove_small(mask, min_voxels, *, structure=CUBE):
    """Drop the connected components of `mask` with fewer than `min_voxels` voxels."""
    labels, n = ndi.label(mask, structure=structure)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def difference(present, absent, min_voxels):
    """Voxels of `present` not in `absent`, ignoring the one-voxel tolerance band.

    The band holds the differing voxels that lie within one voxel both of `absent` and of the
    outside of `present`: where the two surfaces run side by side, a jitter of the surface
    between two scans. Differences keep the band voxels next to their core, so only those
    confined to the band vanish; components below `min_voxels` are dropped.
    """
    diff = present & ~absent
    band = diff & ndi.binary_dilation(absent, CUBE) & ndi.binary_dilation(~present, CUBE)
    core = diff & ~band
    return remove_small(diff & ndi.binary_dilation(core, CUBE), min_voxels)
