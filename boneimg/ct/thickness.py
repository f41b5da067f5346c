"""Local thickness by largest inscribed spheres, exact on the voxel grid.

Definition (Hildebrand & Rüegsegger 1997, J Microsc 185:67): the local thickness at a point p
of a structure is the diameter of the largest sphere that contains p and lies inside the
structure. On the voxel grid:

- the sphere centred at voxel c has radius r(c), the Euclidean distance (in µm, with the voxel
  size of each axis) from the centre of c to the nearest voxel centre of the other phase; the
  open ball ``|q - c| < r(c)`` holds no voxel centre of the other phase;
- the local thickness of voxel p is ``2 max{r(c) : |p - c| < r(c)}`` over the structure's voxels.

This is BoneJ's convention (diameter = 2 x distance to the nearest background voxel centre):
a plate t voxels thick reads t (t even) or t + 1 (t odd) voxels; rods and spheres of diameter d
read 0-1.5 voxels low when their centre lies off the voxel centres (by up to 0.87 voxel).

``subvoxel=True`` puts sphere centres on a 3x finer grid (see :func:`local_thickness`): rods
and spheres then read within about ±0.4 voxel. Spheres still stop at the other phase's voxel
centres, whose nearest member lies within a small fraction of a voxel of a curved or oblique
surface, except on faces that are flat and axis-aligned over a square of 9 x 9 voxels: there
every such centre lies half a voxel beyond the face, a plate would read a voxel too thick, and
the other phase is taken to fill its voxel cubes up to the face instead (a plate then reads t
or t + 1/3). Taking every face at the cube faces would read rods and spheres 1-2 voxels low:
the inscribed sphere meets the innermost corners of the voxel staircase. A thin plate tilted
off the axes still reads 0.3-0.9 voxel thick in sub-voxel mode (4-6.5 voxels thick): near the
foot of a sphere's radius too few of the other phase's centres lie close to a flat face.

Outside the analysed region (``roi``) and outside the array the image is unknown, neither
phase. A sphere may reach into the unknown, but only if a sphere of the same size lies wholly
in the known structure and can be slid to it without meeting the other phase: r(c) is the
radius with the unknown counted as the other phase, reconstructed (grey-level reconstruction
by dilation along 6-connected paths through the structure) under the radius with the unknown
ignored. So a plate or rod crossing the region's edge reads its full thickness right up to the
edge, while a plate or gap lying along the edge is read at its visible width and never at twice
it (tools that ignore the array border read a plate lying on it at double width; tools that
count the border as background read thinner near it).

Algorithm (compiled loops in :mod:`._thickness_kernels`, run over chunks of planes by
``numba.get_num_threads()`` Python threads, taking the next chunk when free, so that a thread
slowed by other work on its core delays no other; set ``NUMBA_NUM_THREADS=1`` where processes
already share the cores): exact squared distances by the separable lower envelope of parabolas; the limit by the
unknown by grey-level reconstruction (raster scans, then a queue).
Every structure voxel c is a sphere centre. It is skipped when its sphere's lattice points
all lie in a neighbour's sphere that comes later in (radius, flat index) order (a table gives,
per radius and direction, the smallest such neighbour radius; a 3x3x3 maximum spares the
search where no neighbour is large enough); otherwise, among those later neighbours the one
whose sphere reaches furthest past c is its parent, and c writes its radius only into the part
of its sphere outside the parent's (one template per radius, parent radius and direction,
computed once). Writing the maximum leaves each voxel with the largest sphere that covers it:
a voxel left out by c lies in a later, at least as large sphere, and so on up a chain that
ends at a sphere written in full. The writes run in slabs along the first axis, alternate
slabs at the same time: a slab is as thick as a sphere is wide, so no two write one voxel.
"""

from concurrent.futures import ThreadPoolExecutor
import itertools
import math

import numba
import numpy as np
from scipy import ndimage as ndi

from . import _thickness_kernels as kernels
from ._inputs import BYTES_PER_VOXEL, binary_mask, region, require_memory, voxel_size

#: Refinement of the sphere centres' grid (per axis) in sub-voxel mode (odd: the coarse voxel
#: centres stay on the fine grid).
SUBVOXEL_FACTOR = 3
#: Half-width (voxels) of the square in which a face must be flat and axis-aligned to be taken
#: at the voxel faces in sub-voxel mode: a sphere or rod up to 16 voxels across never leaves one.
FLAT_HALF_WIDTH = 4
#: Relative slack of the float comparisons that let a sphere skip points (float voxel sizes).
TOLERANCE = 1e-12
#: Planes per chunk of work handed to a thread.
CHUNK = 4


def local_thickness(mask, voxel_size_um, *, roi=None, subvoxel=False):
    """Local thickness of a structure: diameter of the largest inscribed sphere at each voxel.

    Parameters
    ----------
    mask : ndarray of bool, shape (M, N) or (P, M, N)
        The structure (bone for Tb.Th, marrow for Tb.Sp); a numeric array of 0 and one other
        value is accepted. Inside `roi`, everything else is the other phase.
    voxel_size_um : float or sequence of float
        Voxel size in µm, one number or one per axis (anisotropic voxels are measured in µm).
    roi : ndarray of bool, same shape as `mask`, optional
        Analysed region; outside it (and outside the array) the image is unknown.
    subvoxel : bool
        Place sphere centres on a grid ``SUBVOXEL_FACTOR`` (3) times finer per axis, still
        stopping spheres at the voxel centres of the other phase; a voxel's thickness is the
        largest sphere containing its centre, as by default. Removes the loss from centres
        snapped to voxel centres (rods and spheres read within about ±0.4 voxel instead of up
        to 1.5 voxel low); faces flat and axis-aligned over 9 x 9 voxels are taken at the voxel
        faces (an axis-aligned plate of t voxels reads t or t + 1/3). Memory and time grow
        3^n-fold.

    Returns
    -------
    ndarray of float32, same shape as `mask`
        Local thickness in µm on the structure inside the region, NaN elsewhere.

    Notes
    -----
    Convention: diameter = 2 x distance from the sphere's centre voxel to the nearest voxel centre
    of the other phase (BoneJ's). See the module docstring for the treatment of the unknown
    outside `roi` and for the algorithm.
    """
    structure = binary_mask(mask, "mask")
    spacing = voxel_size(voxel_size_um, structure.ndim)
    known = region(roi, structure.shape)
    inside = structure & known
    other = known & ~structure
    if subvoxel:
        factor = SUBVOXEL_FACTOR
        require_memory(tuple(n * factor for n in structure.shape), BYTES_PER_VOXEL, what="sub-voxel local thickness")
        fine_inside, fine_known = inside, known
        for axis in range(structure.ndim):
            fine_inside, fine_known = (np.repeat(a, factor, axis=axis) for a in (fine_inside, fine_known))
        fine_other = np.zeros_like(fine_inside)
        fine_other[tuple(slice(factor // 2, None, factor) for _ in range(structure.ndim))] = other
        for axis, side, cubes in _flat_faces(inside, other, known):
            # where the face is a flat, axis-aligned patch the other phase fills its voxel cubes
            # up to the face (the unbiased estimate of a plane between two voxel layers)
            layer = [slice(None)] * structure.ndim
            layer[axis] = slice(0 if side > 0 else factor - 1, None, factor)
            fine = cubes
            for a in range(structure.ndim):
                fine = np.repeat(fine, factor, axis=a)
            fine_other[tuple(layer)] |= fine[tuple(layer)]
        diameter = _diameter_um(fine_inside, fine_other, fine_known, tuple(s / factor for s in spacing))
        # each voxel reads the largest sphere containing its centre, as on the coarse grid
        diameter = diameter[tuple(slice(factor // 2, None, factor) for _ in range(structure.ndim))].copy()
    else:
        diameter = _diameter_um(inside, other, known, spacing)
    return diameter


def _flat_faces(inside, other, known, half_width=FLAT_HALF_WIDTH):
    """The other phase's voxels whose face toward the structure lies in a flat, axis-aligned patch.

    Yields ``(axis, side, voxels)``: `voxels` (bool, the grid's shape) are the voxels q of
    `other` with ``q - side * e_axis`` in `inside`, where no known pair in the square of
    ``2 * half_width + 1`` voxels around it in the face's plane is anything but such a face.
    """
    for axis in range(inside.ndim):
        for side in (1, -1):
            # pairs (a, q = a + side e_axis), indexed by q
            ahead = [slice(None)] * inside.ndim
            behind = [slice(None)] * inside.ndim
            ahead[axis], behind[axis] = (slice(1, None), slice(None, -1)) if side > 0 else (slice(None, -1), slice(1, None))
            ahead, behind = tuple(ahead), tuple(behind)
            face = np.zeros_like(inside)
            face[ahead] = other[ahead] & inside[behind]
            both_known = np.zeros_like(inside)
            both_known[ahead] = known[ahead] & known[behind]
            size = [2 * half_width + 1] * inside.ndim
            size[axis] = 1
            contradicted = ndi.maximum_filter(both_known & ~face, size=size, mode="constant", cval=False)
            yield axis, side, face & ~contradicted


def _diameter_um(inside, other, known, spacing):
    """Local thickness in µm (float32) of the voxels `inside`; NaN elsewhere.

    Spheres are centred on `inside`, stop at the points of `other`, and reach into the
    unknown (``~known``) only as far as a fully known sphere of their size could be slid.
    Works on 3-D grids padded by one voxel of the unknown; a 2-D image is one slice whose
    slice spacing exceeds every distance in it, so no sphere leaves the slice.
    """
    shape = inside.shape
    weights, unit_um2 = _axis_weights(spacing)
    if inside.ndim == 2:
        inside, other, known = inside[None], other[None], known[None]
        weights = (sum(w * (n + 2) ** 2 for w, n in zip(weights, shape)) + 1, *weights)
    w = np.asarray(weights, dtype=np.float64)
    # radius with the unknown ignored, and with the unknown counted as the other phase
    centres = np.pad(inside, 1)
    # integer squared distances below 2**24 are exact in float32: half the memory traffic
    exact32 = all(isinstance(x, int) for x in weights) and sum(x * n * n for x, n in zip(weights, centres.shape)) < 2 ** 24
    dtype = np.float32 if exact32 else np.float64
    with ThreadPoolExecutor(numba.get_num_threads()) as pool:
        reaching = _squared_distance(pool, np.pad(other, 1), w, centres, dtype)
        radius = _limit_by_unknown(pool, reaching, known, w, centres)
        top = float(radius.max())
        if top == 0:  # no structure
            return np.full(shape, np.nan, dtype=np.float32)
        kernels.reconstruct(radius, reaching)
        del reaching
        codes, levels = _max_covering(pool, radius, top, w)
        diameter = np.empty(tuple(n - 2 for n in centres.shape), np.float32)
        _in_chunks(pool, kernels.diameters, len(diameter), codes, centres, levels, 2 * math.sqrt(unit_um2), diameter)
    return diameter.reshape(shape)


def _in_chunks(pool, kernel, n, *args, chunks=None):
    """``kernel(*args, start, stop)`` over planes ``0:n`` in chunks of `CHUNK` planes (or the
    given ``(start, stop)`` pairs) on the threads of `pool`; the kernels release the GIL."""
    if chunks is None:
        chunks = [(start, min(start + CHUNK, n)) for start in range(0, n, CHUNK)]
    for done in [pool.submit(kernel, *args, start, stop) for start, stop in chunks]:
        done.result()


def _squared_distance(pool, features, weights, keep, dtype):
    """Squared distance from each `keep` voxel to the nearest `features` voxel (0 outside
    `keep`; see :func:`._thickness_kernels.distance_envelopes`), as `dtype`."""
    out = np.empty(features.shape, dtype)
    _in_chunks(pool, kernels.distance_along_axis0, features.shape[1], features, out)
    _in_chunks(pool, kernels.distance_envelopes, features.shape[0], out, weights, keep)
    return out


def _limit_by_unknown(pool, reaching, known, weights, centres):
    """``min(reaching, squared distance to the unknown)`` on the one-voxel-padded grid."""
    if not known.all():
        return np.minimum(reaching, _squared_distance(pool, ~np.pad(known, 1), weights, centres, reaching.dtype))
    # only the outside of the array, whose nearest point lies straight across a face
    limited = np.empty_like(reaching)
    _in_chunks(pool, kernels.limit_by_faces, len(reaching), reaching, weights, limited)
    return limited


def _axis_weights(spacing):
    """Squared voxel size of each axis and the unit they are in (µm²).

    Ratios of squared voxel sizes that are rational with a small denominator (equal sizes up
    to float noise in the file, 2:1, 1.5:1, ...) become integers, whose squared distances are
    exact integers; other ratios stay floats.
    """
    smallest = min(spacing) ** 2
    ratios = [s * s / smallest for s in spacing]
    for denominator in range(1, 65):
        scaled = [r * denominator for r in ratios]
        if all(abs(w - round(w)) <= 1e-6 * w for w in scaled):
            return tuple(int(round(w)) for w in scaled), smallest / denominator
    return tuple(ratios), smallest


def _max_covering(pool, radius, top, weights):
    """For each voxel of a 3-D grid, the largest sphere covering it.

    Parameters
    ----------
    pool : ThreadPoolExecutor
        Threads to run the kernels on.
    radius : ndarray of float32 or float64, shape (P, M, N)
        Squared radius of the sphere centred at each voxel (0: none).
    top : float
        The largest of `radius`.
    weights : ndarray of float64, shape (3,)
        Squared voxel size of each axis in the unit of `radius`.

    Returns
    -------
    codes : ndarray of int16 or int32, shape (P, M, N)
        Index in `levels` of ``max{radius[c] : |p - c|² < radius[c]}`` at each voxel p (-1
        where no sphere reaches).
    levels : ndarray of float64
        The squared lengths of lattice vectors up to the largest radius, sorted.
    """
    # the lattice vectors up to the largest radius, sorted by length
    reach = [int(math.isqrt(int(top // w))) + 1 for w in weights]
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    sq = _squared_length(grid, weights)
    order = np.argsort(sq, kind="stable")
    grid, sq = grid[order], sq[order]
    levels = np.unique(sq[sq <= top])
    grid, sq = grid[sq < top], sq[sq < top]
    inside_count = np.searchsorted(sq, levels, side="left")
    # nearest first: a sphere is most often found inside a face neighbour's, and the search stops there
    neighbours = np.array(sorted((o for o in itertools.product((-1, 0, 1), repeat=3) if any(o)),
                                 key=lambda o: float(_squared_length(np.array(o), weights))))
    lengths = np.sqrt(_squared_length(neighbours, weights))
    contain = _containing_codes(levels, _farthest(grid, weights, neighbours, inside_count), neighbours)
    # 16-bit codes where they suffice: half the memory traffic of the scans and writes
    codes = np.empty(radius.shape, np.int16 if len(levels) < np.iinfo(np.int16).max else np.int32)
    kernels.level_codes(radius, levels, codes)
    # the radii are spent once coded: their pages hold the plan where the item sizes agree
    plan = radius.view(np.int32) if radius.dtype == np.float32 else np.empty(radius.shape, np.int32)
    plan.fill(-1)
    _in_chunks(pool, kernels.plan_spheres, len(radius), codes, contain, _forward(neighbours), neighbours,
               np.sqrt(levels), lengths, plan)
    # a sphere reaches at most `reach` voxels past its centre: paint on a grid padded by that
    padded = [n + 2 * r for n, r in zip(radius.shape, reach)]
    offsets = (grid[:, 0] * padded[1] + grid[:, 1]) * padded[2] + grid[:, 2]
    starts, template_offsets = kernels.assign_templates(plan, codes, levels, inside_count, grid, sq, offsets,
                                                        neighbours, lengths, weights, TOLERANCE)
    painted = np.full(padded, -1, codes.dtype)
    # slabs as thick as a sphere is wide: alternate slabs never write the same voxel
    thickness = 2 * reach[0]
    slabs = [(start, min(start + thickness, len(radius))) for start in range(0, len(radius), thickness)]
    for phase in (slabs[::2], slabs[1::2]):
        _in_chunks(pool, kernels.paint, 0, plan, codes, starts, template_offsets, np.array(reach), painted, chunks=phase)
    return painted[tuple(slice(r, r + n) for r, n in zip(reach, radius.shape))], levels


def _containing_codes(levels, farthest, neighbours):
    """``contain[k, own]``: the smallest code whose sphere, centred at neighbour k and later
    than a sphere of code `own` in (radius, flat index) order, holds all its lattice points."""
    holding = np.searchsorted(levels * (1.0 - TOLERANCE), farthest, side="right")
    own = np.arange(len(levels))[:, None]
    return np.ascontiguousarray(np.maximum(holding, own + ~_forward(neighbours)).T, dtype=np.int32)


def _forward(neighbours):
    """Whether each neighbour lies at a later flat index (its first non-zero offset is positive)."""
    return np.array([o[np.flatnonzero(o)[0]] > 0 for o in neighbours])


def _farthest(grid, weights, neighbours, inside_count, chunk=1 << 16):
    """``farthest[code, k]``: the largest squared distance from neighbour k to the lattice
    points of the sphere of squared radius ``levels[code]`` (the first ``inside_count[code]``
    rows of `grid`); -inf for a sphere without points."""
    running = np.full(len(neighbours), -np.inf)
    cumulative = np.empty((len(grid) + 1, len(neighbours)))
    cumulative[0] = running
    for first in range(0, len(grid), chunk):
        rows = grid[first:first + chunk]
        distance = _squared_length(rows[:, None, :] - neighbours[None, :, :], weights)
        np.maximum.accumulate(np.vstack([running, distance]), axis=0, out=cumulative[first:first + len(rows) + 1])
        running = cumulative[first + len(rows)]
    return cumulative[inside_count]


def _squared_length(vectors, weights):
    """``sum_i weights[i] v_i²`` over the last axis, summed in axis order as the distance map is."""
    total = np.zeros(vectors.shape[:-1])
    for axis, weight in enumerate(weights):
        total += weight * np.square(vectors[..., axis], dtype=np.float64)
    return total
