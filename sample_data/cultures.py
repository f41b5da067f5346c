"""Synthetic TRAP-stained osteoclast cultures (cells in a dish) with exact ground truth.

A culture is a monolayer on glass: large spread osteoclasts (24–120 µm across, 3–20 pale nuclei
in a shared red-magenta cytoplasm), small mononuclear and binuclear TRAP-positive cells
(precursors, which must not count), unstained cells with a hematoxylin nucleus only, some cells
touching a neighbour, stain that varies from cell to cell, darker image corners (vignetting)
and camera noise. Cells are drawn in µm, so the same seed at two pixel sizes shows the same dish.
"""

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from boneimg.io.image import Image

from .sections import HEMATOXYLIN_OD, TRAP_OD
from .synthetic import Synthetic

#: Fewest nuclei of a counted osteoclast in a culture (the usual rule).
MIN_NUCLEI = 3
_GAP_UM = 4.0  # free glass between cells that are not meant to touch
_OVERLAP_UM = 2.0  # how far touching cells reach into each other (the neck between them)
# kind: (cell radius µm, nuclei, TRAP-positive)
_KINDS = {"osteoclast": ((12.0, 60.0), None, True), "mononuclear": ((6.0, 9.0), 1, True),
          "binuclear": ((9.0, 13.0), 2, True), "unstained": ((6.0, 10.0), 1, False)}


class _Shape:
    """A star-shaped outline in µm: radius(θ) = r (1 + Σ wobble harmonics) around (y, x)."""

    def __init__(self, rng, y, x, radius, wobble):
        self.y, self.x, self.r = y, x, radius
        self.k = np.arange(2, 5)
        self.amp = rng.uniform(0, wobble, 3) / self.k
        self.phase = rng.uniform(0, 2 * np.pi, 3)

    def radius(self, theta):
        theta = np.asarray(theta, float)[..., None]
        return self.r * (1 + (self.amp * np.cos(self.k * theta + self.phase)).sum(-1))

    @property
    def reach(self):
        return self.r * (1 + self.amp.sum())

    def rho(self, y, x):
        """Distance from the centre over the outline's radius in that direction (<= 1 inside)."""
        dy, dx = y - self.y, x - self.x
        return np.hypot(dy, dx) / self.radius(np.arctan2(dy, dx))


def _nuclei(rng, cell, n, size_um):
    """Up to `n` non-overlapping nucleus ellipses (y, x, a, b, angle) well inside `cell`."""
    out = []
    for _ in range(300 * n):
        if len(out) == n:
            break
        a = rng.uniform(*size_um)
        b, angle = a * rng.uniform(0.7, 0.9), rng.uniform(0, np.pi)
        theta, frac = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 1))
        reach = cell.radius(theta) - a - 1.5
        if reach <= 0:
            continue
        y, x = cell.y + frac * reach * np.sin(theta), cell.x + frac * reach * np.cos(theta)
        if all(np.hypot(y - o[0], x - o[1]) > a + o[2] + 1.0 for o in out):
            out.append((y, x, a, b, angle))
    return out


def _place(rng, size_um, counts, touching_fraction):
    """Cells (kind, shape, nuclei) on the dish; a share of them placed touching an earlier cell."""
    cells = []
    order = [kind for kind, n in counts.items() for _ in range(n)]  # osteoclasts first: they need room
    for kind in order:
        (r0, r1), n_nuclei, _ = _KINDS[kind]
        for _ in range(200):
            radius = rng.uniform(r0, r1)
            shape = _Shape(rng, 0.0, 0.0, radius, 0.35 if kind == "osteoclast" else 0.2)
            touch = cells and rng.random() < touching_fraction
            if touch:  # put it against a random earlier cell, edges overlapping by _OVERLAP_UM
                other = cells[rng.integers(len(cells))][1]
                phi = rng.uniform(0, 2 * np.pi)
                d = other.radius(phi) + shape.radius(phi + np.pi) - _OVERLAP_UM
                shape.y, shape.x = other.y + d * np.sin(phi), other.x + d * np.cos(phi)
            else:
                shape.y, shape.x = (rng.uniform(shape.reach, s - shape.reach) for s in size_um)
            inside = all(shape.reach <= c <= s - shape.reach for c, s in zip((shape.y, shape.x), size_um))
            clear = all(np.hypot(shape.y - o.y, shape.x - o.x) >= shape.reach + o.reach + _GAP_UM
                        for _, o, _ in cells if not (touch and o is other))
            if not (inside and clear):
                continue
            if kind == "osteoclast":
                capacity = min(20, int(np.pi * radius ** 2 / 150))
                nuclei = _nuclei(rng, shape, int(rng.integers(MIN_NUCLEI, max(capacity, MIN_NUCLEI) + 1)), (4.0, 6.0))
                if len(nuclei) < MIN_NUCLEI:
                    continue
            else:
                nuclei = _nuclei(rng, shape, n_nuclei, (3.0, 4.5))
                if len(nuclei) < n_nuclei:
                    continue
            cells.append((kind, shape, nuclei))
            break
    return cells


def _rasterise(cells, shape, pixel_size_um):
    """Cell and nucleus label images (1-based, in the order of `cells`): touching cells meet
    where their normalised radii are equal."""
    cell_labels = np.zeros(shape, np.int32)
    nucleus_labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    hosts = []
    for index, (_, outline, nuclei) in enumerate(cells, 1):
        box = tuple(slice(max(0, int((c - outline.reach) / pixel_size_um) - 1),
                          min(n, int((c + outline.reach) / pixel_size_um) + 2))
                    for c, n in zip((outline.y, outline.x), shape))
        yy, xx = ((np.arange(b.start, b.stop) + 0.5) * pixel_size_um for b in box)
        rho = outline.rho(yy[:, None], xx[None, :])
        mine = rho < best[box]
        cell_labels[box][mine & (rho <= 1)] = index
        best[box] = np.minimum(best[box], rho)
        for y, x, a, b, angle in nuclei:
            dy, dx = yy[:, None] - y, xx[None, :] - x
            u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
            hosts.append(index)
            nucleus_labels[box][(u / a) ** 2 + (v / b) ** 2 <= 1] = len(hosts)
    return cell_labels, nucleus_labels, np.asarray(hosts, np.int32)


def _render(rng, cells, cell_labels, nucleus_labels, hosts, pixel_size_um):
    """RGB uint8 through Beer–Lambert: TRAP in cytoplasm, hematoxylin in nuclei, pale
    osteoclast nuclei, cell-to-cell stain variation, vignetting and noise."""
    n = len(cells)
    kinds = [kind for kind, _, _ in cells]
    trap_cell = np.zeros(n + 1, np.float32)
    hema_nucleus = np.zeros(n + 1, np.float32)
    for i, kind in enumerate(kinds, 1):
        if _KINDS[kind][2]:
            trap_cell[i] = rng.uniform(0.25, 0.6) if kind == "osteoclast" else rng.uniform(0.35, 0.8)
        hema_nucleus[i] = rng.uniform(0.1, 0.35) if kind == "osteoclast" else rng.uniform(0.5, 0.9)
    grain = ndi.gaussian_filter(rng.standard_normal(cell_labels.shape).astype(np.float32), 0.6 / pixel_size_um)
    grain /= grain.std() + 1e-12
    trap = trap_cell[cell_labels] * (1 + 0.25 * grain)
    hema = np.where(cell_labels > 0, 0.03, 0.0).astype(np.float32)
    in_nucleus = nucleus_labels > 0
    host = np.zeros(nucleus_labels.max() + 1, np.int32)
    host[1:] = hosts
    owner = host[nucleus_labels[in_nucleus]]
    trap[in_nucleus] = 0.15 * trap_cell[owner]  # nuclei hold little TRAP: pale ovals in the cytoplasm
    hema[in_nucleus] = hema_nucleus[owner] * (1 + 0.1 * grain[in_nucleus])
    vectors = {}
    for name, reference in (("hematoxylin", HEMATOXYLIN_OD), ("trap", TRAP_OD)):
        vector = reference / np.linalg.norm(reference) + rng.normal(0, 0.03, 3)
        vectors[name] = vector / np.linalg.norm(vector)
    od = np.clip(hema, 0, None)[..., None] * vectors["hematoxylin"] + np.clip(trap, 0, None)[..., None] * vectors["trap"]
    od = ndi.gaussian_filter(od, (0.5 / pixel_size_um, 0.5 / pixel_size_um, 0))  # optics
    h, w = cell_labels.shape
    yy, xx = np.mgrid[0:h, 0:w]
    corner = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    illumination = 1 - rng.uniform(0.05, 0.12) * corner  # corners 5–12 % darker, as in real micrographs
    glass = rng.uniform(200, 245) + rng.uniform(-5, 5, 3)  # near-neutral glass, slightly tinted
    rgb = glass * illumination[..., None] * 10.0 ** (-od) + rng.normal(0, rng.uniform(1.5, 3.0), od.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), vectors


def trap_culture(shape=(1024, 1024), pixel_size_um=1.0, *, seed=0, osteoclasts=12, mononuclear=90, binuclear=25,
                 unstained=40, touching_fraction=0.25):
    """A synthetic TRAP-stained osteoclast culture with exact ground truth.

    Parameters
    ----------
    shape : tuple of int
        Image size (rows, columns) in pixels.
    pixel_size_um : float
        Pixel size in µm; cells are drawn in µm.
    seed : int
        Seed of the random generator; the same seed gives the same image.
    osteoclasts, mononuclear, binuclear, unstained : int
        How many cells of each kind to place (fewer where the dish is full): multinucleated
        TRAP+ osteoclasts (24–120 µm across, 3–20 nuclei), mononuclear and binuclear TRAP+
        cells, and TRAP-negative cells.
    touching_fraction : float
        Share of cells placed touching an earlier one.

    Returns
    -------
    Synthetic
        ``truth`` holds ``cells`` (int32 labels of every cell), ``osteoclast_labels`` (the
        TRAP-positive cells only, same ids), ``nuclei`` (int32 labels), ``cells_table``
        (label, kind, x, y in pixels, area_um2, n_nuclei, trap_positive, counted: TRAP+ with
        at least :data:`MIN_NUCLEI` nuclei), ``N.Oc``, ``min_nuclei`` and ``stain_od``.
    """
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    size_um = tuple(s * pixel_size_um for s in shape)
    counts = {"osteoclast": osteoclasts, "binuclear": binuclear, "mononuclear": mononuclear, "unstained": unstained}
    cells = _place(rng, size_um, counts, touching_fraction)
    cell_labels, nucleus_labels, hosts = _rasterise(cells, shape, pixel_size_um)
    rgb, vectors = _render(rng, cells, cell_labels, nucleus_labels, hosts, pixel_size_um)
    labels = np.arange(1, len(cells) + 1)
    centroid = ndi.center_of_mass(np.ones(shape), cell_labels, labels)
    table = pd.DataFrame({
        "label": labels.astype(np.int32), "kind": [kind for kind, _, _ in cells],
        "x": [c[1] for c in centroid], "y": [c[0] for c in centroid],
        "area_um2": np.bincount(cell_labels.ravel(), minlength=len(cells) + 1)[1:] * pixel_size_um ** 2,
        "n_nuclei": np.bincount(hosts, minlength=len(cells) + 1)[1:]})
    table["trap_positive"] = [_KINDS[kind][2] for kind in table["kind"]]
    table["counted"] = table["trap_positive"] & (table["n_nuclei"] >= MIN_NUCLEI)
    trap_positive = np.concatenate([[False], table["trap_positive"].to_numpy()])
    meta = {"format": "synthetic", "generator": "trap_culture", "seed": seed, "stain": "trap", "culture": True}
    image = Image(rgb, "yxc", (pixel_size_um, pixel_size_um), "brightfield", meta)
    truth = {"cells": cell_labels, "osteoclast_labels": np.where(trap_positive[cell_labels], cell_labels, 0),
             "nuclei": nucleus_labels, "cells_table": table, "N.Oc": int(table["counted"].sum()),
             "min_nuclei": MIN_NUCLEI, "stain_od": vectors}
    return Synthetic(image, truth)
