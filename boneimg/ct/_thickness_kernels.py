"""Compiled loops of :mod:`boneimg.ct.thickness` (numba): squared distance transform, grey-level
reconstruction and sphere painting, on 3-D grids (a 2-D image is one slice thick).

Squared distances are sums of ``weights[a] * k**2`` in axis order; with integer weights they
are exact integers, held in float32 below 2**24 and in float64 otherwise. The caller allocates the large outputs with NumPy, which
backs them with huge pages: numba's own allocations fault in 4 kB pages, which doubled the
time of a pass that only writes.
"""

import numba
import numpy as np

INF = np.inf


@numba.njit(cache=True, nogil=True)
def distance_along_axis0(features, out, start, stop):
    """First pass of the squared distance transform (Felzenszwalb & Huttenlocher 2012) over
    rows ``start:stop`` of axis 1: distance in voxels along axis 0 to the nearest `features`
    voxel (inf if none), into `out`."""
    n0, n1, n2 = features.shape
    # forth, then back, in rows of axis 1 so that the inner loops run along memory
    for j in range(start, stop):
        for k in range(n2):
            out[0, j, k] = 0.0 if features[0, j, k] else INF
        for i in range(1, n0):
            for k in range(n2):
                out[i, j, k] = 0.0 if features[i, j, k] else out[i - 1, j, k] + 1.0
        for i in range(n0 - 2, -1, -1):
            for k in range(n2):
                out[i, j, k] = min(out[i, j, k], out[i + 1, j, k] + 1.0)


@numba.njit(cache=True, nogil=True)
def distance_envelopes(out, weights, keep, start, stop):
    """Second pass over planes ``start:stop`` of axis 0: from the distances along axis 0 in
    `out`, the squared distances (``sum weights[a] * k**2``), by the lower envelope of
    parabolas along axes 1 and 2; 0 outside `keep`."""
    n0, n1, n2 = out.shape
    w0 = weights[0]
    n = max(n1, n2)
    f, v, z, base, top = np.empty(n), np.empty(n, np.int64), np.empty(n + 1), np.empty(n), np.empty(n)
    for i in range(start, stop):
        for k in range(n2):
            for j in range(n1):
                g = out[i, j, k]
                f[j] = w0 * (g * g) if g != INF else INF
            _envelope(f, n1, weights[1], v, z, base, top)
            for j in range(n1):
                out[i, j, k] = f[j]
        for j in range(n1):
            for k in range(n2):
                f[k] = out[i, j, k]
            _envelope(f, n2, weights[2], v, z, base, top)
            for k in range(n2):
                out[i, j, k] = f[k] if keep[i, j, k] else 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _envelope(f, n, w, v, z, base, top):
    """``f[p] <- min_q f[q] + w (p - q)²`` over the first `n` entries, in place. Work space:
    the envelope's parabolas' vertices `v`, minima `base`, ``f[q] + w q²`` (`top`) and the
    points `z` where each takes over."""
    k = -1
    for q in range(n):
        fq = f[q]
        if fq == INF:
            continue
        lifted = fq + w * q * q
        s = -INF
        # the first parabola is never dropped: the new one takes over from it at some finite point
        while k >= 0:
            s = (lifted - top[k]) / (2.0 * w * (q - v[k]))
            if s > z[k]:
                break
            k -= 1
        k += 1
        v[k], base[k], top[k], z[k] = q, fq, lifted, s
    if k < 0:
        return
    z[k + 1] = INF
    m = 0
    for p in range(n):
        while z[m + 1] < p:
            m += 1
        d = p - v[m]
        f[p] = base[m] + w * (d * d)


@numba.njit(cache=True, nogil=True)
def reconstruct(current, mask):
    """Grey-level reconstruction by dilation of `current` under `mask` (``current <= mask``)
    along 6-connected paths, in place (Vincent 1993, hybrid): a forward and a backward raster
    scan, then a queue of the voxels whose value may still spread. Only voxels below the mask
    can change; none of them may lie on the array's faces."""
    n0, n1, n2 = current.shape
    values, limits = current.ravel(), mask.ravel()
    below = np.flatnonzero(values < limits)
    steps = (n1 * n2, n2, 1)
    for p in below:
        best = values[p]
        for step in steps:
            best = max(best, values[p - step])
        values[p] = min(best, limits[p])
    queue = np.empty(max(below.size, 16), np.int64)
    end = 0
    for t in range(below.size - 1, -1, -1):
        p = below[t]
        best = values[p]
        for step in steps:
            best = max(best, values[p + step])
        value = min(best, limits[p])
        values[p] = value
        for step in steps:
            q = p + step
            if values[q] < value and values[q] < limits[q]:
                queue[end] = p
                end += 1
                break
    start = 0
    while start < end:
        p = queue[start]
        start += 1
        value = values[p]
        for step in (-n1 * n2, -n2, -1, 1, n2, n1 * n2):
            q = p + step
            if values[q] < value and values[q] < limits[q]:
                values[q] = min(value, limits[q])
                if end == queue.size:  # reuse the consumed front, or grow
                    queue = np.concatenate((queue[start:end], np.empty(end - start + queue.size, np.int64)))
                    end -= start
                    start = 0
                queue[end] = q
                end += 1


@numba.njit(cache=True, nogil=True)
def level_codes(squared, levels, codes):
    """Fill `codes` (an integer array shaped like `squared`) with the index in the sorted
    `levels` of each voxel's squared radius (the nearest level; -1 where it is 0, no sphere).
    Integer levels are looked up in a table, others searched."""
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
            out[p] = -1
            continue
        if integer:
            out[p] = table[int(value)]
            continue
        at = min(np.searchsorted(levels, value), top)
        if at > 0 and value - levels[at - 1] < levels[at] - value:
            at -= 1
        out[p] = at


@numba.njit(cache=True, nogil=True)
def diameters(codes, inside, levels, scale, out, start, stop):
    """``scale * sqrt(levels[code])`` on `inside` (where every code is set), NaN elsewhere,
    without the grid's one-voxel border, into planes ``start:stop`` of `out` (float32)."""
    n0, n1, n2 = codes.shape
    roots = (scale * np.sqrt(levels)).astype(np.float32)
    for i in range(start, stop):
        for j in range(n1 - 2):
            for k in range(n2 - 2):
                out[i, j, k] = roots[codes[i + 1, j + 1, k + 1]] if inside[i + 1, j + 1, k + 1] else np.nan


@numba.njit(cache=True, nogil=True)
def plan_spheres(codes, contain, forward, neighbours, roots, lengths, plan, start, stop):
    """Which spheres of planes ``start:stop`` to write, and against which parent, into `plan`
    (int32, same shape as `codes`, holding -1): -1 for no sphere or one whose lattice points all lie in a later neighbour's, else
    the index of the parent neighbour, or ``len(neighbours)`` for the whole sphere.

    "Later" is in (radius, flat index) order (`forward[q]`: neighbour q lies at a later flat
    index); neighbour q with code ``other`` holds the sphere of code ``own`` when ``other >=
    contain[q, own]`` (precomputed, order included). The parent is the later neighbour whose
    sphere reaches furthest past c (the first such in `neighbours`' order). Voxels on the
    array's faces carry no sphere (``codes`` -1).
    """
    n0, n1, n2 = codes.shape
    n_neighbours = neighbours.shape[0]
    steps = (neighbours[:, 0] * n1 + neighbours[:, 1]) * n2 + neighbours[:, 2]
    flat = codes.ravel()
    least = np.empty(contain.shape[1], np.int32)
    for own in range(least.size):
        least[own] = contain[:, own].min()
    entries = plan.ravel()
    for i in range(max(start, 1), min(stop, n0 - 1)):
        # the largest code in each voxel's 3x3x3 neighbourhood, separably: a sphere that no
        # neighbour could hold needs no search
        across, largest = np.empty((n1, n2), codes.dtype), np.empty((n1, n2), codes.dtype)
        for j in range(n1):
            for k in range(n2):
                across[j, k] = max(codes[i - 1, j, k], codes[i, j, k], codes[i + 1, j, k])
        for j in range(1, n1 - 1):
            for k in range(n2):
                largest[j, k] = max(across[j - 1, k], across[j, k], across[j + 1, k])
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                p = (i * n1 + j) * n2 + k
                own = flat[p]
                if own < 0:
                    continue
                top = max(largest[j, k - 1], largest[j, k], largest[j, k + 1])
                if top >= least[own]:
                    held = False
                    for q in range(n_neighbours):
                        if flat[p + steps[q]] >= contain[q, own]:
                            held = True
                            break
                    if held:
                        continue
                parent = n_neighbours
                parent_reach = -INF
                for q in range(n_neighbours):
                    # neighbours come nearest first: stop when none left can reach further
                    if roots[top] - lengths[q] <= parent_reach:
                        break
                    other = flat[p + steps[q]]
                    if other > own or (other == own and forward[q]):
                        reach = roots[other] - lengths[q]
                        if reach > parent_reach:
                            parent_reach, parent = reach, q
                entries[p] = parent


@numba.njit(cache=True, nogil=True)
def assign_templates(plan, codes, levels, inside_count, grid, sq, offsets, neighbours, lengths, weights, tolerance):
    """Replace each entry of `plan` (from :func:`plan_spheres`) by the index of its template:
    the flat offsets of the points of the sphere outside its parent's (all of them when it
    has none), one template per (own code, parent code, direction), computed once.

    Returns ``starts`` and ``pool``: template t is ``pool[starts[t]:starts[t + 1]]``.
    """
    n0, n1, n2 = codes.shape
    n_neighbours = neighbours.shape[0]
    steps = (neighbours[:, 0] * n1 + neighbours[:, 1]) * n2 + neighbours[:, 2]
    flat, entries = codes.ravel(), plan.ravel()
    roots = np.sqrt(levels)
    width = n_neighbours + 1
    # a table per (own code, direction) over the parent codes met (own code + 0, 1, ...):
    # first its length, then where it starts in `index`
    rows = np.zeros(levels.size * width + 1, np.int64)
    for p in range(entries.size):
        parent = entries[p]
        if parent >= 0:
            own = flat[p]
            above = 0 if parent == n_neighbours else flat[p + steps[parent]] - own
            rows[own * width + parent + 1] = max(rows[own * width + parent + 1], above + 1)
    rows = np.cumsum(rows)
    index = np.full(rows[-1], -1, np.int64)
    starts = np.zeros(1024, np.int64)
    pool = np.empty(1 << 16, np.int64)
    count = 0
    for p in range(entries.size):
        parent = entries[p]
        if parent < 0:
            continue
        own = flat[p]
        parent_code = own if parent == n_neighbours else flat[p + steps[parent]]
        slot = rows[own * width + parent] + parent_code - own
        if index[slot] < 0:
            index[slot] = count
            if count + 2 > starts.size:
                starts = np.concatenate((starts, np.zeros(starts.size, np.int64)))
            used = starts[count]
            if parent == n_neighbours:
                pool = _reserve(pool, used, inside_count[own])
                pool[used:used + inside_count[own]] = offsets[:inside_count[own]]
                used += inside_count[own]
                pool[starts[count]:used].sort()
            else:
                pool, used = _uncovered(pool, used, offsets, grid, sq, inside_count[own], levels[parent_code],
                                        roots[parent_code] - lengths[parent], neighbours[parent], weights, tolerance)
            count += 1
            starts[count] = used
        entries[p] = index[slot]
    return starts[:count + 1], pool


@numba.njit(cache=True, nogil=True)
def paint(plan, codes, starts, pool, margins, out, start, stop):
    """The largest code written over each voxel, into `out` (holding -1; the grid of `codes`
    padded by `margins`), by the centres in planes ``start:stop``: centre p writes ``codes[p]``
    through template ``plan[p]`` (see :func:`assign_templates`), at most ``margins[0]`` planes
    from its own: ranges more than ``2 * margins[0]`` planes apart may run at the same time.
    """
    n0, n1, n2 = codes.shape
    m0, m1, m2 = margins
    p1, p2 = n1 + 2 * m1, n2 + 2 * m2
    painted, flat, entries = out.ravel(), codes.ravel(), plan.ravel()
    for i in range(start, stop):
        for j in range(n1):
            for k in range(n2):
                p = (i * n1 + j) * n2 + k
                template = entries[p]
                if template < 0:
                    continue
                own = flat[p]
                centre = ((i + m0) * p1 + (j + m1)) * p2 + (k + m2)
                for t in range(starts[template], starts[template + 1]):
                    target = centre + pool[t]
                    if painted[target] < own:
                        painted[target] = own


@numba.njit(cache=True, nogil=True)
def _reserve(pool, used, extra):
    """`pool` with room for `extra` more entries after the first `used`."""
    if used + extra <= pool.size:
        return pool
    grown = np.empty(2 * (used + extra), np.int64)
    grown[:used] = pool[:used]
    return grown


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
    pool = _reserve(pool, used, end - start)
    for t in range(start, end):
        d0, d1, d2 = grid[t, 0] - e[0], grid[t, 1] - e[1], grid[t, 2] - e[2]
        if weights[0] * (d0 * d0) + weights[1] * (d1 * d1) + weights[2] * (d2 * d2) >= limit:
            pool[used] = offsets[t]
            used += 1
    pool[first:used].sort()  # in memory order: nearby writes share cache lines
    return pool, used


@numba.njit(cache=True, nogil=True)
def limit_by_faces(reaching, weights, out, start, stop):
    """``min(reaching, squared distance to the nearest face of the array's one-voxel border)``,
    into planes ``start:stop`` of `out`."""
    n0, n1, n2 = reaching.shape
    for i in range(start, stop):
        a = min(i, n0 - 1 - i)
        along0 = weights[0] * (a * a)
        for j in range(n1):
            b = min(j, n1 - 1 - j)
            along01 = min(along0, weights[1] * (b * b))
            for k in range(n2):
                c = min(k, n2 - 1 - k)
                out[i, j, k] = min(reaching[i, j, k], min(along01, weights[2] * (c * c)))
