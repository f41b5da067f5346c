"""Compiled loops of :mod:`boneimg.ct.thickness` (numba): squared distance transform, grey-level
reconstruction and sphere painting, on 3-D float64 grids (a 2-D image is one slice thick).

Squared distances are sums of ``weights[a] * k**2`` in axis order; with integer weights they
are exact integers held in float64.
"""

import math

import numba
import numpy as np

INF = np.inf


@numba.njit(cache=True, nogil=True)
def squared_distance(features, weights, keep):
    """Squared distance from each `keep` voxel to the nearest `features` voxel (inf if there is
    none; 0 outside `keep`); beyond the array there are no features. Separable: exact 1-D
    distances along axis 0, then the lower envelope of parabolas along axes 1 and 2
    (Felzenszwalb & Huttenlocher 2012)."""
    n0, n1, n2 = features.shape
    out = np.empty(features.shape)
    w0 = weights[0]
    # axis 0: distances in voxels forth, then back, plane by plane so that the inner loops run
    # along memory (squared and weighted when the lines of axis 1 read them)
    for j in range(n1):
        for k in range(n2):
            out[0, j, k] = 0.0 if features[0, j, k] else INF
    for i in range(1, n0):
        for j in range(n1):
            for k in range(n2):
                out[i, j, k] = 0.0 if features[i, j, k] else out[i - 1, j, k] + 1.0
    for i in range(n0 - 2, -1, -1):
        for j in range(n1):
            for k in range(n2):
                out[i, j, k] = min(out[i, j, k], out[i + 1, j, k] + 1.0)
    n = max(n1, n2)
    for i in range(n0):
        f, v, z = np.empty(n), np.empty(n, np.int64), np.empty(n + 1)
        for k in range(n2):
            for j in range(n1):
                g = out[i, j, k]
                f[j] = w0 * (g * g) if g != INF else INF
            _envelope(f, n1, weights[1], v, z)
            for j in range(n1):
                out[i, j, k] = f[j]
        for j in range(n1):
            for k in range(n2):
                f[k] = out[i, j, k]
            _envelope(f, n2, weights[2], v, z)
            for k in range(n2):
                out[i, j, k] = f[k] if keep[i, j, k] else 0.0
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _envelope(f, n, w, v, z):
    """``f[p] <- min_q f[q] + w (p - q)²`` over the first `n` entries, in place."""
    k = -1
    for q in range(n):
        fq = f[q]
        if fq == INF:
            continue
        if k < 0:
            k = 0
            v[0] = q
            z[0] = -INF
            z[1] = INF
            continue
        s = ((fq + w * q * q) - (f[v[k]] + w * v[k] * v[k])) / (2.0 * w * (q - v[k]))
        while s <= z[k]:
            k -= 1
            s = ((fq + w * q * q) - (f[v[k]] + w * v[k] * v[k])) / (2.0 * w * (q - v[k]))
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = INF
    if k < 0:
        return
    # the parabolas' values are read before any is overwritten: keep their minima apart
    base = np.empty(k + 1)
    for m in range(k + 1):
        base[m] = f[v[m]]
    m = 0
    for p in range(n):
        while z[m + 1] < p:
            m += 1
        d = p - v[m]
        f[p] = base[m] + w * (d * d)


@numba.njit(cache=True, nogil=True)
def reconstruct(current, mask):
    """Grey-level reconstruction by dilation of `current` under `mask` (``current <= mask``)
    along 6-connected paths, in place: forward and backward raster scans until stable, over
    the voxels below the mask only (no other voxel can change)."""
    n0, n1, n2 = current.shape
    values, limits = current.ravel(), mask.ravel()
    below = np.flatnonzero(values < limits)
    steps = np.array([n1 * n2, n2, 1])
    sizes = np.array([n0, n1, n2])
    changed = True
    while changed:
        changed = False
        for direction in (1, -1):
            for t in range(below.size) if direction == 1 else range(below.size - 1, -1, -1):
                p = below[t]
                m = limits[p]
                c = values[p]
                if c >= m:
                    continue
                best = c
                rest = p
                for axis in range(3):
                    # index along this axis, then the neighbour before (forward) or after it
                    index = (rest // steps[axis]) % sizes[axis]
                    if 0 <= index - direction < sizes[axis]:
                        best = max(best, min(values[p - direction * steps[axis]], m))
                if best > c:
                    values[p] = best
                    changed = True


@numba.njit(cache=True, nogil=True)
def level_codes(squared, levels):
    """Index in the sorted `levels` of each voxel's squared radius (the nearest level; -1 where
    it is 0, no sphere). Integer levels are looked up in a table, others searched."""
    codes = np.full(squared.shape, -1, np.int32)
    flat, out = squared.ravel(), codes.ravel()
    top = levels.size - 1
    integer = levels[top] < 1 << 24 and np.all(levels == np.floor(levels))
    table = np.full(int(levels[top]) + 1 if integer else 0, -1, np.int32)
    if integer:
        for code in range(levels.size):
            table[int(levels[code])] = code
    for p in range(flat.size):
        value = flat[p]
        if value <= 0:
            continue
        if integer:
            out[p] = table[int(value)]
            continue
        at = min(np.searchsorted(levels, value), top)
        if at > 0 and value - levels[at - 1] < levels[at] - value:
            at -= 1
        out[p] = at
    return codes


@numba.njit(cache=True, nogil=True)
def diameters(codes, levels, scale):
    """``scale * sqrt(levels[code])`` as float32 (0 where the code is -1), without the grid's
    one-voxel border."""
    n0, n1, n2 = codes.shape
    roots = (scale * np.sqrt(levels)).astype(np.float32)
    out = np.zeros((n0 - 2, n1 - 2, n2 - 2), np.float32)
    for i in range(n0 - 2):
        for j in range(n1 - 2):
            for k in range(n2 - 2):
                code = codes[i + 1, j + 1, k + 1]
                if code >= 0:
                    out[i, j, k] = roots[code]
    return out


@numba.njit(cache=True, nogil=True)
def paint(codes, levels, inside_count, farthest, grid, sq, neighbours, margins, weights, tolerance):
    """For each voxel, the code of the largest sphere covering it, on a grid padded by `margins`.

    Every voxel c with a sphere (``codes >= 0``; never on the array's faces) is a centre. Its
    parent is the neighbour, after it in (radius, flat index) order, whose sphere reaches
    furthest past c; c is skipped when its sphere's lattice points all lie in a later
    neighbour's sphere (`farthest`), and otherwise writes only the points of its sphere outside
    the parent's. Every voxel ends with the largest sphere covering it: a point that c leaves
    out lies in a sphere at least as large, later in the order, and the chain of parents ends
    at a sphere that writes it.

    `grid` (int64, rows of 3) holds the lattice offsets sorted by their squared length `sq`;
    `inside_count[code]` counts those shorter than ``sqrt(levels[code])``; `farthest[code, k]`
    is the largest squared distance from neighbour k to a lattice point of a sphere of that code.
    """
    n0, n1, n2 = codes.shape
    m0, m1, m2 = margins
    p1, p2 = n1 + 2 * m1, n2 + 2 * m2
    out = np.full((n0 + 2 * m0, p1, p2), -1, np.int32)
    painted = out.ravel()
    flat = codes.ravel()
    offsets = (grid[:, 0] * p1 + grid[:, 1]) * p2 + grid[:, 2]
    n_neighbours = neighbours.shape[0]
    steps = (neighbours[:, 0] * n1 + neighbours[:, 1]) * n2 + neighbours[:, 2]
    lengths = np.sqrt(weights[0] * (neighbours[:, 0] * neighbours[:, 0])
                      + weights[1] * (neighbours[:, 1] * neighbours[:, 1])
                      + weights[2] * (neighbours[:, 2] * neighbours[:, 2]))
    roots = np.sqrt(levels)
    # the points of a sphere outside a neighbour's, per (own code, parent code, neighbour)
    # key -> (start in `pool`) << 32 | length
    templates = numba.typed.Dict.empty(key_type=numba.int64, value_type=numba.int64)
    pool = np.empty(1 << 16, np.int64)
    used = 0
    for p in range(flat.size):
        own = flat[p]
        if own < 0:
            continue
        contained = False
        parent = -1
        parent_reach = -INF
        for q in range(n_neighbours):
            other = flat[p + steps[q]]
            # only neighbours after c in (radius, flat index) order
            if other < own or (other == own and steps[q] < 0):
                continue
            if levels[other] * (1.0 - tolerance) > farthest[own, q]:
                contained = True
                break
            reach = roots[other] - lengths[q]
            if reach > parent_reach:
                parent_reach, parent = reach, q
        if contained:
            continue
        i, rest = divmod(p, n1 * n2)
        j, k = divmod(rest, n2)
        centre = ((i + m0) * p1 + (j + m1)) * p2 + (k + m2)
        if parent < 0:  # no later neighbour: the whole sphere
            first, last = 0, inside_count[own]
            source = offsets
        else:
            parent_code = flat[p + steps[parent]]
            key = (own * levels.size + parent_code) * n_neighbours + parent
            packed = templates.get(key, -1)
            if packed < 0:
                first = used
                pool, used = _uncovered(pool, used, offsets, grid, sq, inside_count[own], levels[parent_code],
                                        roots[parent_code] - lengths[parent], neighbours[parent], weights, tolerance)
                packed = first << 32 | (used - first)
                templates[key] = packed
            first = packed >> 32
            last = first + (packed & 0xFFFFFFFF)
            source = pool
        for t in range(first, last):
            target = centre + source[t]
            if painted[target] < own:
                painted[target] = own
    return out


@numba.njit(cache=True, nogil=True)
def _uncovered(pool, used, offsets, grid, sq, end, parent_squared, parent_reach, e, weights, tolerance):
    """Append to `pool` the flat offsets of the first `end` lattice points (a sphere) that lie
    outside the sphere of squared radius `parent_squared` centred at neighbour `e`."""
    first = used
    start = 0
    # points nearer the centre than the parent's reach past it lie in the parent's sphere
    if parent_reach > 0:
        start = np.searchsorted(sq[:end], parent_reach * parent_reach * (1.0 - tolerance))
    limit = parent_squared * (1.0 - tolerance)
    if used + end - start > pool.size:
        grown = np.empty(2 * (used + end - start), np.int64)
        grown[:used] = pool[:used]
        pool = grown
    for t in range(start, end):
        d0, d1, d2 = grid[t, 0] - e[0], grid[t, 1] - e[1], grid[t, 2] - e[2]
        if weights[0] * (d0 * d0) + weights[1] * (d1 * d1) + weights[2] * (d2 * d2) >= limit:
            pool[used] = offsets[t]
            used += 1
    pool[first:used].sort()  # in memory order: nearby writes share cache lines
    return pool, used


@numba.njit(cache=True, nogil=True)
def limit_by_faces(reaching, weights):
    """``min(reaching, squared distance to the nearest face of the array's one-voxel border)``."""
    n0, n1, n2 = reaching.shape
    out = np.empty_like(reaching)
    for i in range(n0):
        a = min(i, n0 - 1 - i)
        along0 = weights[0] * (a * a)
        for j in range(n1):
            b = min(j, n1 - 1 - j)
            along01 = min(along0, weights[1] * (b * b))
            for k in range(n2):
                c = min(k, n2 - 1 - k)
                out[i, j, k] = min(reaching[i, j, k], min(along01, weights[2] * (c * c)))
    return out
