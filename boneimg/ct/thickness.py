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
read 0-1.5 voxels low, their best centre being off the true one. ``subvoxel=True`` puts sphere
centres on a 3x finer grid (see :func:`local_thickness`).

Outside the analysed region (``roi``) and outside the array the image is unknown, neither
phase. A sphere may reach into the unknown, but only if a sphere of the same size lies wholly
in the known structure and can be slid to it without meeting the other phase: r(c) is the
radius with the unknown counted as the other phase, reconstructed (grey-level reconstruction
by dilation along 6-connected paths through the structure) under the radius with the unknown
ignored. So a plate or rod crossing the region's edge reads its full thickness right up to the
edge, while a plate or gap lying along the edge is read at its visible width and never at twice
it (tools that ignore the array border read a plate lying on it at double width; tools that
count the border as background read thinner near it).

Algorithm: squared distances are exact (separable minimum over a window that grows until no
voxel is left at the window's reach). Every structure voxel c is a sphere centre; among its
neighbours with a sphere at least as large, the one whose sphere reaches furthest past c is its
parent, and c writes its value only into the part of its sphere that the parent's sphere leaves
uncovered (empty for most voxels). Writing in increasing order of radius leaves each voxel with
the largest sphere that covers it: a voxel left out by c lies in the parent's sphere, whose
value is at least c's, and so on up a chain that ends at a sphere written in full.
"""

import itertools
import math

import numpy as np

from ._inputs import BYTES_PER_VOXEL, binary_mask, region, require_memory, voxel_size

#: Refinement of the sphere centres' grid (per axis) in sub-voxel mode (odd: the coarse voxel
#: centres stay on the fine grid).
SUBVOXEL_FACTOR = 3
# Flat indices written at once while painting (bounds the index buffer to ~64 MB).
_CHUNK = 1 << 23


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
        mean over its sub-voxels. Removes the loss from centres snapped to voxel centres
        (rods and spheres read within about ±0.5 voxel instead of up to a voxel low) but
        reads an axis-aligned plate of t voxels at about t + 1 (the other phase's voxel
        centres lie half a voxel beyond its faces). Memory and time grow 3^n-fold.

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
        diameter = _diameter_um(fine_inside, fine_other, fine_known, tuple(s / factor for s in spacing))
        shape = [n for s in structure.shape for n in (s, factor)]
        diameter = diameter.reshape(shape).mean(axis=tuple(range(1, 2 * structure.ndim, 2)))
    else:
        diameter = _diameter_um(inside, other, known, spacing)
    diameter[~inside] = np.nan
    return diameter


def _diameter_um(inside, other, known, spacing):
    """Local thickness in µm (float32) of the voxels `inside`; 0 elsewhere.

    Spheres are centred on `inside`, stop at the points of `other`, and reach into the
    unknown (``~known``) only as far as a fully known sphere of their size could be slid.
    """
    weights, unit_um2 = _axis_weights(spacing)
    pad = np.pad(inside, 1)
    # radius with the unknown ignored, and with the unknown counted as the other phase
    if other.any():
        reaching = _squared_distance(np.pad(~other, 1, constant_values=True), weights)
    else:  # nothing bounds a sphere but the unknown
        integer = all(isinstance(w, int) for w in weights)
        reaching = np.full(pad.shape, np.iinfo(np.uint32).max if integer else np.inf,
                           dtype=np.uint32 if integer else np.float64)
    reaching *= pad
    fully_known = _limit_by_unknown(reaching, known, weights)
    if not fully_known.any():
        return np.zeros(inside.shape, dtype=np.float32)
    radius = _reconstruct(fully_known, np.minimum(reaching, fully_known.max()))
    del fully_known, reaching
    covering = _max_covering(pad, radius, weights)
    core = tuple(slice(1, 1 + n) for n in inside.shape)
    return (2 * math.sqrt(unit_um2)) * np.sqrt(covering[core], dtype=np.float32)


def _limit_by_unknown(reaching, known, weights):
    """``min(reaching, squared distance to the unknown)`` on the one-voxel-padded grid."""
    dtype = reaching.dtype
    top = np.iinfo(dtype).max if dtype.kind == "u" else np.inf
    if not known.all():
        to_unknown = _squared_distance(np.pad(known, 1), weights)
        to_unknown = np.minimum(to_unknown.astype(np.result_type(to_unknown, dtype)), top)
        return np.minimum(reaching, to_unknown.astype(dtype))
    # only the outside of the array: the nearest face along each axis, one axis at a time
    limited = reaching.copy()
    for axis, (n, weight) in enumerate(zip(known.shape, weights)):
        index = np.arange(n + 2)
        along = np.minimum(weight * np.minimum(index, n + 1 - index) ** 2, top).astype(dtype)
        np.minimum(limited, along.reshape([-1 if a == axis else 1 for a in range(known.ndim)]), out=limited)
    return limited


def _reconstruct(seed, mask):
    """Grey-level reconstruction by dilation of `seed` under `mask` (``seed <= mask``) along
    6-connected paths: sweeps forth and back along each axis until nothing changes (a path
    with k turns needs k + 1 rounds; usually one or two)."""
    current = seed.copy()
    # the sweeps run along the first axis; rotating the axes keeps the slices contiguous
    masks = [mask]
    for _ in range(seed.ndim - 1):
        masks.append(np.ascontiguousarray(np.moveaxis(masks[-1], 0, -1)))
    while True:
        changed = False
        for axis_mask in masks:
            before = current.copy()
            for order in (range(1, current.shape[0]), range(current.shape[0] - 2, -1, -1)):
                step = order.step
                for i in order:
                    np.maximum(current[i], np.minimum(current[i - step], axis_mask[i]), out=current[i])
            changed |= not np.array_equal(before, current)
            current = np.ascontiguousarray(np.moveaxis(current, 0, -1))
        if not changed:
            return current


def _axis_weights(spacing):
    """Squared voxel size of each axis and the unit they are in (µm²).

    Ratios of squared voxel sizes that are rational with a small denominator (equal sizes up
    to float noise in the file, 2:1, 1.5:1, ...) become integers, whose squared distances are
    exact in small unsigned integers; other ratios stay floats (slower).
    """
    smallest = min(spacing) ** 2
    ratios = [s * s / smallest for s in spacing]
    for denominator in range(1, 65):
        scaled = [r * denominator for r in ratios]
        if all(abs(w - round(w)) <= 1e-6 * w for w in scaled):
            return tuple(int(round(w)) for w in scaled), smallest / denominator
    return tuple(ratios), smallest


def _squared_distance(structure, weights):
    """Exact squared Euclidean distance from each structure voxel to the nearest other voxel.

    Parameters
    ----------
    structure : ndarray of bool
        The structure, with at least one voxel outside it. Voxels beyond the array are ignored
        (pad with False to count them).
    weights : tuple
        Squared voxel size of each axis in a common unit: integers give an exact unsigned
        integer result, floats a float64 one.

    Returns
    -------
    ndarray
        Squared distance in the unit of `weights` (0 outside the structure).
    """
    integer = all(isinstance(w, int) for w in weights)
    # window half-width in the smallest voxel size: 7, 15, 31, ... from the first one that a
    # 4x coarser grid suggests, widened until no voxel is left at the window's reach
    reach = 7.0
    while reach < _distance_estimate(structure, weights):
        reach = 2 * reach + 1
    while True:
        cap = reach * reach * min(weights) + 1  # every value below the cap is exact
        if integer:
            cap = int(math.ceil(cap))
            dtype = np.uint8 if cap <= 0xFF else np.uint16 if cap <= 0xFFFF else np.uint32
        else:
            dtype = np.float64
        squared = np.where(structure, dtype(cap), dtype(0))
        for weight in weights:
            # each pass works along the first axis, then rotates it to the end
            squared = np.ascontiguousarray(np.moveaxis(_window_min(squared, weight, cap), 0, -1))
        if not (squared >= cap).any():
            return squared
        reach = 2 * reach + 1


def _distance_estimate(structure, weights, block=4):
    """Largest distance (in the smallest voxel size) seen on a grid `block` times coarser, where
    a cell is structure only if all its voxels are; 0 for small arrays."""
    shape = [n // block for n in structure.shape]
    if min(shape) < 2:
        return 0.0
    cropped = structure[tuple(slice(0, n * block) for n in shape)]
    cells = cropped.reshape([v for n in shape for v in (n, block)]).all(axis=tuple(range(1, 2 * len(shape), 2)))
    if cells.all() or not cells.any():
        return 0.0
    scale = math.sqrt(max(weights) / min(weights))
    return block * (math.sqrt(float(_squared_distance(cells, weights).max()) / min(weights)) + scale / 2)


def _window_min(values, weight, cap):
    """``min_k values[i + k] + weight k²`` along axis 0 over ``weight k² < cap``, capped at `cap`."""
    out = values.copy()
    scratch = np.empty_like(values)
    n = values.shape[0]
    step = values.dtype.type
    k = 1
    while weight * k * k < cap and k < n:
        add = step(weight * k * k)
        # clip before adding so that unsigned sums stay below the cap (no overflow)
        limit = step(cap - weight * k * k)
        for dst, src in (((slice(k, None)), slice(None, -k)), (slice(None, -k), slice(k, None))):
            buf = scratch[: n - k]
            np.minimum(values[src], limit, out=buf)
            buf += add
            np.minimum(out[dst], buf, out=out[dst])
        k += 1
    return out


def _max_covering(structure, squared, weights):
    """For each voxel, the largest squared radius among the spheres that cover it.

    Parameters
    ----------
    structure : ndarray of bool
        The sphere centres. Spheres may reach past the array (they are painted on a copy padded
        by the largest radius).
    squared : ndarray
        Squared radius of the sphere at each centre (0 elsewhere): unsigned integers, or
        floats (slower).
    weights : tuple
        Squared voxel size of each axis in the unit of `squared`.

    Returns
    -------
    ndarray of the dtype of `squared`
        ``max{squared[c] : |p - c|² < squared[c]}`` at each voxel p (0 where no sphere reaches).
    """
    ndim = structure.ndim
    margin = int(math.isqrt(int(math.ceil(float(squared.max()) / min(weights))))) + 1
    painted_shape = tuple(n + 2 * margin for n in structure.shape)
    strides = np.array([int(np.prod(painted_shape[a + 1:])) for a in range(ndim)], dtype=np.int64)
    offsets = np.array([o for o in itertools.product((-1, 0, 1), repeat=ndim) if any(o)])
    lengths = np.sqrt((offsets * offsets) @ np.asarray(weights, dtype=np.float64))
    if squared.dtype.kind == "u":  # integer squared distances order themselves
        code, levels = squared, None
    else:  # float ones are replaced by their rank among the distinct values
        levels, code = np.unique(squared, return_inverse=True)
        code = code.reshape(squared.shape)
    # neighbour order (forward or backward in flat index) is the same on both grids
    parent_key, bits = _parents(code, offsets, lengths, strides, levels)

    # every structure voxel is a sphere centre with a parent (id 0: none, the sphere is written whole)
    centres = np.flatnonzero(structure.ravel())
    own = code.ravel()[centres]
    keys = parent_key.ravel()[centres]
    del parent_key
    parent_id = keys & keys.dtype.type((1 << bits) - 1)
    parent = keys >> keys.dtype.type(bits + 1)  # 0 where there is no parent (key 0)
    del keys
    values = np.arange(int(own.max()) + 1, dtype=np.float64) if levels is None else levels
    templates = _Templates(values, np.flatnonzero(np.bincount(own)), offsets, weights, strides,
                           np.int32 if np.prod(painted_shape, dtype=np.float64) < 2**31 else np.int64)
    # drop the centres whose sphere lies inside the parent's (empty template; no parent: kept)
    n_ids = len(offsets) + 1
    farthest = templates.farthest.ravel()[own.astype(np.intp) * n_ids + parent_id]
    keep = (parent if levels is None else levels[parent]) * (1 - 1e-12) <= farthest
    del farthest
    centres, own, parent, parent_id = centres[keep], own[keep], parent[keep], parent_id[keep]
    # the same centres on the array padded for painting
    centres = np.ravel_multi_index(tuple(c + margin for c in np.unravel_index(centres, structure.shape)),
                                   painted_shape)
    # one template per (own radius, parent radius, parent): the part of the sphere the parent's
    # sphere leaves uncovered; groups sorted so that radii increase
    n_codes = templates.values.size
    group = (own.astype(np.int64) * n_codes + parent) * n_ids + parent_id
    order = np.argsort(group, kind="stable")
    group, centres = group[order], centres[order].astype(templates.flat.dtype)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], group.size]

    covering = np.zeros(int(np.prod(painted_shape)), dtype=squared.dtype)
    for start, end in zip(starts, ends):
        rest, pid = divmod(int(group[start]), n_ids)
        own_code, parent_code = divmod(rest, n_codes)
        template = templates.uncovered(own_code, parent_code, pid)
        value = squared.dtype.type(templates.values[own_code])
        members = centres[start:end]
        per_chunk = max(1, _CHUNK // max(1, template.size))
        for first in range(0, members.size, per_chunk):
            covering[(members[first:first + per_chunk, None] + template[None, :]).ravel()] = value
    return covering.reshape(painted_shape)[tuple(slice(margin, margin + n) for n in structure.shape)]


class _Templates:
    """Lattice points of a sphere minus a neighbour's sphere, as flat offsets.

    `values[code]` is the squared radius of a code; `farthest[code, id]` (for the codes in
    `present`) the largest squared distance from neighbour `id` to a lattice point of the
    sphere: a neighbour sphere larger than that contains it. Templates are computed for the
    neighbours with non-negative offsets and reflected to the others.
    """

    def __init__(self, values, present, offsets, weights, strides, index_dtype):
        self.values = values
        w = np.asarray(weights, dtype=np.float64)
        reach = int(math.isqrt(int(math.ceil(values[present[-1]] / w.min())))) + 2
        axes = [np.arange(-reach, reach + 1)] * len(strides)
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(strides))
        sq = _squared_length(grid, w)
        by_size = np.argsort(sq, kind="stable")
        self.flat = (grid[by_size] @ strides).astype(index_dtype)
        self.grid, self.sq = grid[by_size], sq[by_size]
        self.weighted = self.grid * w
        self.strides, self.index_dtype = strides, index_dtype
        self.inside = np.searchsorted(self.sq, values, side="left")
        # each neighbour is the reflection (signs) of one with non-negative offset (canonical)
        self.signs = np.where(offsets < 0, -1, 1)
        listed = [tuple(o) for o in offsets]
        self.canonical = np.array([listed.index(tuple(c)) for c in np.abs(offsets)])
        self.offsets, self.weights = offsets, w
        self.lengths = np.sqrt(_squared_length(offsets, w)) + 1e-9
        self.farthest = np.full((values.size, len(offsets) + 1), np.inf)
        columns = np.unique(self.canonical)
        for code in present:
            # the farthest points from a neighbour lie in the sphere's outer shell
            shell_from = np.searchsorted(self.sq, max(0.0, math.sqrt(values[code]) - 2 * self.lengths.max()) ** 2)
            shell = slice(shell_from, self.inside[code])
            far = self._squared_distances(shell, offsets[columns].T).max(axis=0)
            self.farthest[code, 1:] = far[np.searchsorted(columns, self.canonical)]
        self._cache = {}

    def uncovered(self, code, parent, pid):
        end = self.inside[code]
        if pid == 0:
            return self.flat[:end]
        k = self.canonical[pid - 1]
        points = self._cache.get((code, parent, k))
        if points is None:
            # |q - o| >= r' needs |q| >= r' - |o|: only the outer shell can be uncovered
            start = self.sq.searchsorted(max(0.0, math.sqrt(self.values[parent]) - self.lengths[k]) ** 2)
            distance = self._squared_distances(slice(start, end), self.offsets[k])
            # the relative margin keeps, never drops, a point whose distance rounds across the radius
            points = self.grid[start:end][distance >= self.values[parent] * (1 - 1e-12)]
            self._cache = {(code, parent, k): points} if len(self._cache) > 64 else self._cache
            self._cache[(code, parent, k)] = points
        return ((points * self.signs[pid - 1]) @ self.strides).astype(self.index_dtype)

    def _squared_distances(self, points, offsets):
        """``|q - o|²`` (weighted) from the grid points `points` (a slice) to `offsets` (columns)."""
        column = np.ndim(offsets) == 1
        shift = _squared_length(np.asarray(offsets).T, self.weights)
        sq = self.sq[points] if column else self.sq[points, None]
        return sq - 2 * (self.weighted[points] @ offsets) + shift


def _squared_length(vectors, weights):
    """``sum_i weights[i] v_i²`` over the last axis, summed in axis order as the distance map is."""
    total = np.zeros(vectors.shape[:-1])
    for axis, weight in enumerate(weights):
        total += weight * np.square(vectors[..., axis], dtype=np.float64)
    return total


def _parents(code, offsets, lengths, strides, levels=None):
    """Per voxel, the neighbour whose sphere reaches furthest past its own, among the neighbours
    after it in (radius, flat index) order.

    `code` orders the radii: the squared distance itself, or its rank in `levels` (the distinct
    squared distances) when those are not integers. Returns the key array
    ``(2 code' + forward) << bits | id`` of each voxel's parent (id 1-based, 0: none) and `bits`.
    """
    bits = int(len(offsets)).bit_length()
    top = (2 * int(code.max()) + 2) << bits
    kt = np.uint16 if top <= 0xFFFF else np.uint32 if top <= 0xFFFFFFFF else np.uint64
    base = code.astype(kt) << kt(bits + 1)  # (2 code) << bits
    own_last = base | kt((1 << bits) - 1)  # a neighbour key above this comes after the voxel
    best_score = np.full(code.shape, -np.inf, dtype=np.float32)
    best_key = np.zeros(code.shape, dtype=kt)
    group_max = np.empty(code.shape, dtype=kt)
    candidate = np.empty(code.shape, dtype=kt)
    score = np.empty(code.shape, dtype=np.float32)
    better = np.empty(code.shape, dtype=bool)
    for length in np.unique(lengths):
        # the eligible neighbour at this distance with the largest radius (then the largest id)
        group_max.fill(0)
        for k in np.flatnonzero(lengths == length):
            offset = offsets[k]
            forward = int(offset @ strides > 0)
            dst = tuple(slice(max(0, -o), code.shape[a] - max(0, o)) for a, o in enumerate(offset))
            src = tuple(slice(max(0, o), code.shape[a] - max(0, -o)) for a, o in enumerate(offset))
            np.add(base[src], kt((forward << bits) | (k + 1)), out=candidate[dst])
            np.maximum(group_max[dst], candidate[dst], out=group_max[dst])
        # how far the neighbour's sphere reaches past this voxel's centre
        np.right_shift(group_max, kt(bits + 1), out=candidate)
        if levels is None:
            np.sqrt(candidate, out=score, dtype=np.float32)
        else:
            np.take(np.sqrt(levels).astype(np.float32), candidate, out=score)
        score -= np.float32(length)
        np.greater(group_max, own_last, out=better)
        better &= score > best_score
        np.copyto(best_score, score, where=better)
        np.copyto(best_key, group_max, where=better)
    return best_key, bits
