"""Synthetic bone sections, H&E or TRAP-stained, with exact ground truth.

One tissue layout is drawn in µm and rendered at the requested pixel size: trabecular bone
(optionally a cortex with its periosteum) with lining cells on the surface and osteocytes in the
matrix, haematopoietic marrow with small nuclei and adipocytes, tumour nests of large nuclei that
have resorbed the bone they grew into, and osteoclasts lying on the bone surface (a dome over the
surface, a few off the bone, a few touching a neighbour), with 0–6 nuclei in the plane of the
section. :func:`he_section` and :func:`trap_section` with the same seed and field of view show
the same tissue (serial sections), and the same field of view at 0.25 and 0.5 µm/px shows the
same tissue at two magnifications.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import measure

from boneimg.histology.histomorphometry import outline, section_measurements
from boneimg.io.image import Image

from .synthetic import Synthetic

REGION_NAMES = {0: "background", 1: "bone", 2: "marrow", 3: "tumour"}
BONE, SOFT, TUMOUR = 1, 2, 3

# Optical-density directions (R, G, B) of the stains, before the per-image variation.
HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])
EOSIN_OD = np.array([0.07, 0.99, 0.11])
TRAP_OD = np.array([0.16, 0.82, 0.55])  # fast red violet / fast garnet reaction product
FAST_GREEN_OD = np.array([0.80, 0.30, 0.52])  # absorbs red: blue-green

_GRID_UM = 0.5  # placement grid: objects are placed and kept apart in µm, not pixels
_NUCLEUS_GAP_UM = 0.8
# Measurement parameters the truth is computed with (the analysis defaults).
TRUTH_PARAMETERS = {"contact_um": 3.0, "interface_um": 10.0, "min_nuclei": 1}


@dataclass
class _Cell:
    """An ellipse in µm: centre (y, x), semi-axes a (along theta) and b, and what it is."""

    kind: str
    y: float
    x: float
    a: float
    b: float
    theta: float
    stain: float
    host: int = 0  # the osteoclast (1-based cell index) a nucleus lies in, 0 for none
    on_bone: bool = False

    def inside(self, y_um, x_um, grow=0.0):
        dy, dx = y_um - self.y, x_um - self.x
        u = dx * np.cos(self.theta) + dy * np.sin(self.theta)
        v = -dx * np.sin(self.theta) + dy * np.cos(self.theta)
        return (u / (self.a + grow)) ** 2 + (v / (self.b + grow)) ** 2 <= 1.0


class _Fields:
    """Smooth random fields over the field of view, each on a grid a quarter of its scale."""

    def __init__(self, rng, size_um):
        self.rng, self.size_um, self.fields = rng, size_um, {}

    def add(self, name, sigma_um):
        step = sigma_um / 4
        shape = tuple(int(np.ceil(s / step)) + 9 for s in self.size_um)
        noise = ndi.gaussian_filter(self.rng.standard_normal(shape), 4.0, mode="wrap")
        self.fields[name] = ((noise - noise.mean()) / noise.std(), step)

    def __call__(self, name, y_um, x_um):
        values, step = self.fields[name]
        coords = np.stack([np.asarray(y_um, float) / step + 4, np.asarray(x_um, float) / step + 4])
        return ndi.map_coordinates(values, coords, order=3, mode="nearest")


class _Layout:
    """Tissue regions as functions of position in µm, decided by thresholds on smooth fields."""

    def __init__(self, rng, size_um, *, bone_fraction, tumour_fraction, cortex):
        self.size_um = size_um
        self.fields = f = _Fields(rng, size_um)
        for name, sigma in (("tissue", 120.0), ("trabeculae", 30.0), ("keep", 45.0), ("tumour", 50.0),
                            ("wobble", 60.0)):
            f.add(name, sigma)
        self.cortex = cortex
        self.side = int(rng.integers(4))  # which image edge the cortex runs along
        self.cortex_um = (rng.uniform(10, 40), rng.uniform(20, 45), rng.uniform(60, 110))  # glass, periosteum, bone
        y, x = self._grid(4.0)
        self.t_tissue = np.quantile(f("tissue", y, x), rng.uniform(0.03, 0.12))
        self.t_tumour = np.quantile(f("tumour", y, x), 1 - tumour_fraction) if tumour_fraction > 0 else np.inf
        self.t_keep = np.quantile(f("keep", y, x), 0.25)
        self.t_band = np.quantile(np.abs(f("trabeculae", y, x)), bone_fraction / 0.75) if bone_fraction > 0 else -1

    def _grid(self, step):
        ys = np.arange(0, self.size_um[0], step)
        xs = np.arange(0, self.size_um[1], step)
        return np.meshgrid(ys, xs, indexing="ij")

    def regions(self, y_um, x_um):
        """Region code (0 glass, 1 bone, 2 soft tissue, 3 tumour) at positions in µm."""
        f = self.fields
        tissue = f("tissue", y_um, x_um) > self.t_tissue
        tumour_field = f("tumour", y_um, x_um)
        tumour = tumour_field > self.t_tumour
        # Tumour has resorbed the bone in its core; bone survives at its margin (the interface).
        trabecular = ((np.abs(f("trabeculae", y_um, x_um)) < self.t_band) & (f("keep", y_um, x_um) > self.t_keep)
                      & (tumour_field < self.t_tumour + 0.6))
        bone = trabecular
        if self.cortex:
            depth = self._depth(y_um, x_um) + 10 * f("wobble", y_um, x_um)
            glass, periosteum, thickness = np.cumsum(self.cortex_um)
            cortical = (depth >= periosteum) & (depth < thickness)
            bone = (bone & (depth >= thickness)) | cortical
            tissue &= depth >= glass
            tumour &= depth >= thickness
        out = np.where(tissue, SOFT, 0).astype(np.uint8)
        out[tissue & tumour] = TUMOUR
        out[tissue & bone] = BONE
        return out

    def _depth(self, y_um, x_um):
        """Distance in µm from the image edge the cortex runs along."""
        h, w = self.size_um
        return (y_um, h - y_um, x_um, w - x_um)[self.side]


def _surface(bone, step):
    """Soft-tissue pixels touching bone on a grid, with the outward unit normal there."""
    smooth = ndi.gaussian_filter(bone.astype(float), 3.0 / step)
    gy, gx = np.gradient(-smooth)
    norm = np.hypot(gy, gx) + 1e-12
    ys, xs = np.nonzero(ndi.binary_dilation(bone) & ~bone)
    return ys, xs, gy[ys, xs] / norm[ys, xs], gx[ys, xs] / norm[ys, xs]


class _Placer:
    """Places ellipses on a µm grid so that they keep a gap between them."""

    def __init__(self, regions, step):
        self.regions, self.step = regions, step
        self.owner = np.zeros(regions.shape, np.int32)  # 1-based index into cells, 0 free
        self.cells = []
        self._distance = {}

    def distance_inside(self, codes):
        """Distance in µm from each grid point to the outside of the regions `codes`."""
        key = tuple(codes)
        if key not in self._distance:
            self._distance[key] = ndi.distance_transform_edt(np.isin(self.regions, codes)) * self.step
        return self._distance[key]

    def window(self, cell, grow):
        reach = int(np.ceil((cell.a + grow) / self.step)) + 1
        cy, cx = int(round(cell.y / self.step)), int(round(cell.x / self.step))
        y0, x0 = max(cy - reach, 0), max(cx - reach, 0)
        y1, x1 = min(cy + reach + 1, self.regions.shape[0]), min(cx + reach + 1, self.regions.shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1] * self.step
        return (slice(y0, y1), slice(x0, x1)), cell.inside(yy, xx, grow)

    def fits(self, cell, allowed=None, grow=_NUCLEUS_GAP_UM, ignore=()):
        """True when the cell, grown by `grow` µm, lies on free grid points (within `allowed`)."""
        window, body = self.window(cell, grow)
        if not body.any():
            return False
        owner = self.owner[window][body]
        if not np.isin(owner, (0, *ignore)).all():
            return False
        return allowed is None or allowed[window][body].all()

    def add(self, cell, body=None):
        """Record `cell`, drawn as its ellipse or as `body` (flat grid indices); return its index."""
        self.cells.append(cell)
        if body is None:
            window, body = self.window(cell, 0.0)
            self.owner[window][body] = len(self.cells)
        else:
            self.owner.flat[body] = len(self.cells)
        return len(self.cells)

    def scatter(self, rng, kind, codes, density, size_um, stain, *, allowed=None, aspect=(0.65, 1.0),
                min_depth_um=0.0, orient=None):
        """Fill the regions `codes` with cells of `kind` covering about `density` of their area.

        `orient` (grid index -> angle) turns each cell; random angles without it.
        """
        depth = self.distance_inside(codes)
        zone = depth >= min_depth_um
        if allowed is not None:
            zone &= allowed
        candidates = np.flatnonzero(zone)
        if not len(candidates):
            return
        mean_area = np.pi * (np.mean(size_um) / 2) ** 2 * np.mean(aspect)
        n_target = int(density * candidates.size * self.step ** 2 / mean_area)
        placed = 0
        for index in rng.choice(candidates, size=min(8 * n_target, candidates.size), replace=False):
            if placed >= n_target:
                break
            a = rng.uniform(*size_um) / 2
            theta = rng.uniform(0, np.pi) if orient is None else orient(index)
            cell = _Cell(kind, index // zone.shape[1] * self.step, index % zone.shape[1] * self.step,
                         a, a * rng.uniform(*aspect), theta, rng.uniform(*stain))
            if depth.flat[index] >= cell.a and self.fits(cell, zone if allowed is not None else None):
                self.add(cell)
                placed += 1


def _osteoclasts(rng, placer, n_target, *, off_bone_fraction, pair_fraction, anuclear_fraction):
    """Place osteoclasts (domes over the bone surface, a few off bone) and their nuclei."""
    step, regions = placer.step, placer.regions
    bone = regions == BONE
    soft = np.isin(regions, (SOFT, TUMOUR))
    sy, sx, ny, nx = _surface(bone, step)
    if not len(sy):
        return
    from_bone = ndi.distance_transform_edt(~bone) * step
    halo = int(np.ceil(1.5 / step))  # nothing else within 1.5 µm of a cell, but a chosen neighbour

    def body_of(cell, on_bone, ignore=()):
        """Flat grid indices of the cell's body, or None where it does not fit as a compact cell."""
        window, _ = placer.window(cell, 2.0 + step)
        yy, xx = np.mgrid[window] * step
        body = cell.inside(yy, xx) & soft[window]
        parts, n = ndi.label(body)
        if n == 0:
            return None
        if n > 1:  # a dome over a thin trabecula must not reappear on its far side
            body = parts == 1 + int(np.argmax(ndi.sum_labels(body, parts, range(1, n + 1))))
        if on_bone:  # a dome covers bone under about half its ellipse; less is a trabecula's tip
            under = np.mean(bone[window][cell.inside(yy, xx)])
            if not 0.3 <= under <= 0.7:
                return None
        expected = np.pi * cell.a * cell.b * (0.5 if on_bone else 1.0)
        # a dome across the tip of a trabecula is notched deeply enough to look like two cells
        if body.sum() * step ** 2 < 0.7 * expected or measure.regionprops(body.astype(np.uint8))[0].solidity < 0.88:
            return None
        near = ndi.binary_dilation(body, iterations=halo)
        if not np.isin(placer.owner[window][near], (0, *ignore)).all():
            return None
        ys, xs = np.nonzero(body)
        return np.ravel_multi_index((ys + window[0].start, xs + window[1].start), regions.shape)

    def surface_cell(i, a):
        y, x = sy[i] * step, sx[i] * step
        return _Cell("osteoclast", y + ny[i] * rng.uniform(-1, 1.5), x + nx[i] * rng.uniform(-1, 1.5), a,
                     rng.uniform(8, 12), np.arctan2(ny[i], nx[i]) + np.pi / 2, rng.uniform(0.35, 0.8),
                     on_bone=True)

    hosts = []
    for _ in range(n_target * 30):
        if len(hosts) >= n_target:
            break
        if rng.random() < off_bone_fraction:
            y, x = divmod(int(rng.integers(soft.size)), soft.shape[1])
            a = rng.uniform(11, 20)
            cell = _Cell("osteoclast", y * step, x * step, a, a * rng.uniform(0.55, 0.9), rng.uniform(0, np.pi),
                         rng.uniform(0.35, 0.8))
            if not soft[y, x] or from_bone[y, x] < cell.a + 15:
                continue
            body = body_of(cell, on_bone=False)
            group = [(cell, body)] if body is not None else []
        else:
            cell = surface_cell(int(rng.integers(len(sy))), rng.uniform(12, 28))
            body = body_of(cell, on_bone=True)
            group = [(cell, body)] if body is not None else []
            if group and rng.random() < pair_fraction:
                # a neighbour further along the surface, overlapping the thin tip of the first
                a2 = rng.uniform(12, 24)
                along = 0.9 * (cell.a + a2)
                distances = np.hypot(sy * step - cell.y - np.sin(cell.theta) * along,
                                     sx * step - cell.x - np.cos(cell.theta) * along)
                j = int(np.argmin(distances))
                partner = surface_cell(j, a2)
                first = placer.add(cell, body)
                partner_body = body_of(partner, on_bone=True, ignore=(first,))
                placer.cells.pop()
                placer.owner.flat[body] = 0
                if partner_body is not None:
                    shared = np.intersect1d(body, partner_body)
                    ys, xs = np.unravel_index(shared, regions.shape)
                    to_partner = shared[_normalised_distance(partner, ys, xs, step)
                                        < _normalised_distance(cell, ys, xs, step)]
                    body = np.setdiff1d(body, to_partner)
                    group = [(cell, body), (partner, np.setdiff1d(partner_body, body))]
        for cell, body in group:
            hosts.append((placer.add(cell, body), cell, body))

    # Nuclei go into each osteoclast after all bodies exist, so none straddles two cells.
    counts = rng.choice([1, 2, 3, 4, 5, 6], size=len(hosts), p=[0.25, 0.28, 0.2, 0.13, 0.09, 0.05])
    for (owner, _cell, _body), n_nuclei in zip(hosts, counts):
        if rng.random() < anuclear_fraction:
            continue  # a TRAP+ profile whose nuclei lie outside the plane of the section
        mask = placer.owner == owner
        inner = ndi.binary_erosion(mask, iterations=int(np.ceil(_NUCLEUS_GAP_UM / step)))
        ys, xs = np.nonzero(inner)
        placed = 0
        for index in rng.permutation(len(ys))[:80]:
            if placed >= n_nuclei:
                break
            a = rng.uniform(3.0, 4.0)
            nucleus = _Cell("osteoclast_nucleus", ys[index] * step, xs[index] * step, a, a * rng.uniform(0.7, 0.95),
                            rng.uniform(0, np.pi), rng.uniform(0.45, 0.7), host=owner)
            if placer.fits(nucleus, mask, ignore=(owner,)):
                placer.add(nucleus)
                placed += 1


def _normalised_distance(cell, ys, xs, step):
    """Elliptical distance (1 on the outline) of grid points from the centre of `cell`."""
    dy, dx = ys * step - cell.y, xs * step - cell.x
    u = dx * np.cos(cell.theta) + dy * np.sin(cell.theta)
    v = -dx * np.sin(cell.theta) + dy * np.cos(cell.theta)
    return np.hypot(u / cell.a, v / cell.b)




def _scatter_cells(rng, placer):
    """Lining cells, osteocytes, adipocytes, tumour and marrow nuclei, TRAP+ granules."""
    bone = placer.regions == BONE
    gy, gx = np.gradient(ndi.gaussian_filter(bone.astype(float), 4.0 / _GRID_UM))

    def along_surface(index):
        return np.arctan2(gy.flat[index], gx.flat[index]) + np.pi / 2

    near_bone = ndi.binary_dilation(bone, iterations=int(4 / _GRID_UM)) & ~bone
    away_from_bone = ~ndi.binary_dilation(bone, iterations=int(10 / _GRID_UM))
    placer.scatter(rng, "lining", (SOFT,), 0.15, (9, 12), (0.7, 0.95), aspect=(0.22, 0.3), allowed=near_bone,
                   orient=along_surface)
    placer.scatter(rng, "osteocyte", (BONE,), 0.02, (6, 9), (0.6, 0.9), aspect=(0.3, 0.45), min_depth_um=5)
    placer.scatter(rng, "adipocyte", (SOFT,), 0.1, (20, 50), (0, 0), aspect=(0.8, 1.0), min_depth_um=2,
                   allowed=away_from_bone)
    placer.scatter(rng, "tumour", (TUMOUR,), 0.5, (8.5, 12.5), (0.45, 0.75), aspect=(0.6, 0.95), min_depth_um=0.5)
    placer.scatter(rng, "marrow", (SOFT,), 0.38, (4.5, 7.5), (0.75, 1.05), aspect=(0.75, 1.0), min_depth_um=0.5)
    placer.scatter(rng, "trap_granule", (SOFT,), 0.002, (3, 6), (0.4, 0.7), aspect=(0.7, 1.0), min_depth_um=2,
                   allowed=away_from_bone)


def _rasterise(layout, placer, shape, pixel_size_um):
    """Region map and cell map (1-based index into ``placer.cells``, 0 none) at the pixel centres."""
    yy, xx = (np.indices(shape, dtype=np.float32) + 0.5) * pixel_size_um
    regions = layout.regions(yy, xx)
    soft = np.isin(regions, (SOFT, TUMOUR))
    cells = np.zeros(shape, np.int32)
    closest = np.full(shape, np.inf, np.float32)

    def draw(index, cell):
        reach = (cell.a + 1.0) / pixel_size_um
        cy, cx = cell.y / pixel_size_um, cell.x / pixel_size_um
        window = (slice(max(int(cy - reach), 0), max(int(cy + reach) + 2, 0)),
                  slice(max(int(cx - reach), 0), max(int(cx + reach) + 2, 0)))
        dy, dx = yy[window] - cell.y, xx[window] - cell.x
        u = dx * np.cos(cell.theta) + dy * np.sin(cell.theta)
        v = -dx * np.sin(cell.theta) + dy * np.cos(cell.theta)
        distance = np.hypot(u / cell.a, v / cell.b)
        inside = distance <= 1
        if cell.kind == "osteoclast":  # within soft tissue; the nearer centre takes shared pixels
            inside &= soft[window] & (distance < closest[window])
            closest[window][inside] = distance[inside]
        cells[window][inside] = index

    bodies = [i for i, cell in enumerate(placer.cells, 1) if cell.kind == "osteoclast"]
    for index in bodies:
        draw(index, placer.cells[index - 1])
    for index in bodies:  # a dome over a thin trabecula keeps only its main part
        parts, n = ndi.label(cells == index)
        if n > 1:
            largest = 1 + np.argmax(ndi.sum_labels(parts > 0, parts, range(1, n + 1)))
            cells[(parts > 0) & (parts != largest)] = 0
    for index, cell in enumerate(placer.cells, 1):
        if cell.kind != "osteoclast":
            draw(index, cell)
    return regions, cells


def _truth(placer, regions, cells, pixel_size_um):
    """Ground-truth labels and tables from the rasterised cells."""
    kinds = np.array(["none"] + [cell.kind for cell in placer.cells])
    hosts = np.array([0] + [cell.host for cell in placer.cells])
    is_nucleus = np.isin(kinds, list(_NUCLEUS_KINDS))
    nucleus_cells = np.unique(cells[is_nucleus[cells]])
    relabel = np.zeros(len(kinds), np.int32)
    relabel[nucleus_cells] = np.arange(1, len(nucleus_cells) + 1)
    nuclei = relabel[cells]
    nucleus_class = {int(relabel[c]): _NUCLEUS_KINDS[kinds[c]] for c in nucleus_cells}

    osteoclast_cells = [c for c in np.unique(cells) if kinds[c] == "osteoclast"]
    oc_relabel = np.zeros(len(kinds), np.int32)
    oc_relabel[osteoclast_cells] = np.arange(1, len(osteoclast_cells) + 1)
    # an osteoclast owns its nuclei's pixels too
    owner = np.where(is_nucleus[cells] & (hosts[cells] > 0), hosts[cells], cells)
    osteoclasts = oc_relabel[owner]
    area_um2 = pixel_size_um ** 2
    rows = []
    for c in osteoclast_cells:
        label = int(oc_relabel[c])
        ys, xs = np.nonzero(osteoclasts == label)
        in_tumour = np.count_nonzero(regions[ys, xs] == TUMOUR)
        rows.append({"label": label, "x": xs.mean(), "y": ys.mean(), "area_um2": ys.size * area_um2,
                     "n_nuclei": int(np.count_nonzero(hosts[nucleus_cells] == c)),
                     "on_bone": placer.cells[c - 1].on_bone, "at_tumour": 2 * in_tumour > ys.size})
    table = pd.DataFrame(rows, columns=["label", "x", "y", "area_um2", "n_nuclei", "on_bone", "at_tumour"])
    table["counted"] = table["on_bone"] & (table["n_nuclei"] >= TRUTH_PARAMETERS["min_nuclei"])
    props = measure.regionprops_table(nuclei, properties=("label", "centroid", "area"))
    nuclei_table = pd.DataFrame({"label": props["label"], "x": props["centroid-1"], "y": props["centroid-0"],
                                 "area_um2": props["area"] * area_um2,
                                 "cell_type": [nucleus_class[int(i)] for i in props["label"]]})
    return nuclei, nucleus_class, nuclei_table, osteoclasts.astype(np.int32), table


# nucleus kind -> the cell type a nucleus classifier would name
_NUCLEUS_KINDS = {"tumour": "tumour", "marrow": "marrow", "lining": "stromal", "osteocyte": "osteocyte",
                  "osteoclast_nucleus": "osteoclast"}


def _noise(rng, shape, sigma_px):
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), max(sigma_px, 0.5))
    return field / (field.std() + 1e-12)


def _render(rng, placer, regions, cells, pixel_size_um, stain, fast_green):
    """RGB uint8 image of the section through Beer–Lambert, and the stain vectors used."""
    shape = regions.shape
    # The stain, glass and illumination of this slide are drawn before any pixel noise, so the
    # same seed at another pixel size gives the same colours.
    names = ("hematoxylin", "eosin") if stain == "he" else ("hematoxylin", "trap", "fast_green")
    references = {"hematoxylin": HEMATOXYLIN_OD, "eosin": EOSIN_OD, "trap": TRAP_OD, "fast_green": FAST_GREEN_OD}
    vectors, scale = {}, {}
    for name in names:
        vector = references[name] / np.linalg.norm(references[name]) + rng.normal(0, 0.04, 3)
        vectors[name], scale[name] = vector / np.linalg.norm(vector), rng.uniform(0.8, 1.2)
    glass = rng.uniform(232, 250, 3)
    angle = rng.uniform(0, 2 * np.pi)  # uneven illumination: up to 4 % darker across the field
    noise_grey = rng.uniform(1.5, 3.5)
    kinds = np.array(["none"] + [cell.kind for cell in placer.cells])
    strength = np.array([0.0] + [cell.stain for cell in placer.cells], np.float32)
    host_strength = strength[np.array([0] + [cell.host for cell in placer.cells])]
    kind = kinds[cells]
    nucleus = np.isin(kind, list(_NUCLEUS_KINDS))
    body = kind == "osteoclast"
    fat = ndi.binary_erosion(kind == "adipocyte", iterations=max(1, round(1.0 / pixel_size_um)))
    grain = _noise(rng, shape, 0.4 / pixel_size_um)
    coarse = 1 + 0.1 * _noise(rng, shape, 8 / pixel_size_um)

    def per_region(values):  # values for glass, bone, soft tissue, tumour
        return np.asarray(values, np.float32)[regions] * coarse

    # decalcified matrix takes a grey-blue hematoxylin tint where no bone stain is used
    hema = per_region([0, 0.03 if stain == "he" else (0.05 if fast_green else 0.2), 0.05, 0.07])
    hema[body] = 0.04
    hema[nucleus] = strength[cells][nucleus] * (1 + 0.15 * grain[nucleus])
    amounts = {"hematoxylin": hema}
    if stain == "he":
        eosin = per_region([0, 0.62, 0.2, 0.3])
        eosin[body] = 0.5
        eosin[nucleus] = 0.08
        amounts["eosin"] = eosin
    else:
        trap = per_region([0, 0, 0.01, 0.01])
        granule = kind == "trap_granule"
        trap[granule] = strength[cells][granule]
        trap[body] = strength[cells][body] * (1 + 0.3 * grain[body])
        inside = nucleus & (host_strength[cells] > 0)
        trap[inside] = 0.2 * host_strength[cells][inside]
        amounts["trap"] = trap
        if fast_green:
            amounts["fast_green"] = per_region([0, 0.22, 0.015, 0.015])
    od = np.zeros((*shape, 3), np.float32)
    for name, amount in amounts.items():
        amount[fat] = 0
        od += (scale[name] * np.clip(amount, 0, None))[..., None] * vectors[name]
    od = ndi.gaussian_filter(od, (0.35 / pixel_size_um, 0.35 / pixel_size_um, 0))  # optics
    ramp = np.add.outer(np.arange(shape[0]) * np.sin(angle), np.arange(shape[1]) * np.cos(angle))
    illumination = 1 - 0.04 * (ramp - ramp.min()) / max(np.ptp(ramp), 1)
    rgb = glass * illumination[..., None] * 10.0 ** (-od) + rng.normal(0, noise_grey, od.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), {name: vectors[name] for name in amounts}


def _section(generator, shape, pixel_size_um, seed, stain, *, fast_green=False, bone_fraction=0.25,
             tumour_fraction=0.3, cortex=None, osteoclasts_per_mm=8.0, off_bone_fraction=0.12, pair_fraction=0.3,
             anuclear_fraction=0.08):
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    size_um = tuple(s * pixel_size_um for s in shape)
    cortex = bool(rng.random() < 0.5) if cortex is None else cortex
    layout = _Layout(rng, size_um, bone_fraction=bone_fraction, tumour_fraction=tumour_fraction, cortex=cortex)
    grid_regions = layout.regions(*layout._grid(_GRID_UM))
    surface_mm = outline(grid_regions == BONE, _GRID_UM).length_um() / 1000
    n_osteoclasts = int(round(osteoclasts_per_mm * surface_mm / (1 - off_bone_fraction)))
    placer = _Placer(grid_regions, _GRID_UM)
    _osteoclasts(rng, placer, n_osteoclasts, off_bone_fraction=off_bone_fraction, pair_fraction=pair_fraction,
                 anuclear_fraction=anuclear_fraction)
    _scatter_cells(rng, placer)
    regions, cells = _rasterise(layout, placer, shape, pixel_size_um)
    nuclei, nucleus_class, nuclei_table, osteoclast_labels, osteoclasts = _truth(placer, regions, cells,
                                                                                  pixel_size_um)
    rgb, vectors = _render(rng, placer, regions, cells, pixel_size_um, stain, fast_green)
    measurements, _ = section_measurements(
        regions, pixel_size_um, n_tumour_cells=int((nuclei_table["cell_type"] == "tumour").sum()),
        osteoclasts=osteoclasts if stain == "trap" else None, osteoclast_labels=osteoclast_labels,
        contact_um=TRUTH_PARAMETERS["contact_um"], interface_um=TRUTH_PARAMETERS["interface_um"])
    parameters = {"bone_fraction": bone_fraction, "tumour_fraction": tumour_fraction, "cortex": cortex,
                  "osteoclasts_per_mm": osteoclasts_per_mm, "off_bone_fraction": off_bone_fraction,
                  "pair_fraction": pair_fraction, "anuclear_fraction": anuclear_fraction}
    meta = {"format": "synthetic", "generator": generator, "seed": seed, "stain": stain, "parameters": parameters}
    if stain == "trap":
        meta["fast_green"] = fast_green
    image = Image(rgb, "yxc", (pixel_size_um, pixel_size_um), "brightfield", meta)
    truth = {"regions": regions, "nuclei": nuclei, "nucleus_class": nucleus_class, "nuclei_table": nuclei_table,
             "osteoclasts": osteoclasts, "osteoclast_labels": osteoclast_labels, "measurements": measurements,
             "measurement_parameters": dict(TRUTH_PARAMETERS), "stain_od": vectors}
    return Synthetic(image, truth)


def he_section(shape=(512, 512), pixel_size_um=0.5, *, seed=0, **layout):
    """A synthetic H&E-stained section of bone with marrow and tumour.

    Parameters
    ----------
    shape : tuple of int
        Image size (rows, columns) in pixels.
    pixel_size_um : float
        Pixel size in µm; the tissue is drawn in µm, so the same field of view at two pixel
        sizes shows the same tissue.
    seed : int
        Seed of the random generator; the same seed gives the same image.
    **layout
        ``bone_fraction`` (0.25), ``tumour_fraction`` (0.3), ``cortex`` (None: by the seed),
        ``osteoclasts_per_mm`` of bone surface (8), ``off_bone_fraction`` (0.12),
        ``pair_fraction`` (0.3, osteoclasts with a touching neighbour), ``anuclear_fraction``
        (0.08, osteoclast profiles without a nucleus in the plane).

    Returns
    -------
    Synthetic
        ``truth`` holds ``regions`` (uint8: 0 background, 1 bone, 2 marrow, 3 tumour),
        ``nuclei`` (int32 labels), ``nucleus_class`` (label -> "tumour", "marrow", "stromal",
        "osteocyte" or "osteoclast"), ``nuclei_table`` (label, x, y, area_um2, cell_type),
        ``osteoclasts`` (label, x, y, area_um2, n_nuclei, on_bone, at_tumour, counted),
        ``osteoclast_labels`` (int32), ``measurements`` (the expected
        :func:`boneimg.analyze_section` measurements; osteoclast symbols NaN on H&E),
        ``measurement_parameters`` and ``stain_od`` (the stain vectors drawn).
    """
    return _section("he_section", shape, pixel_size_um, seed, "he", **layout)


def trap_section(shape=(1024, 1024), pixel_size_um=0.5, *, seed=0, fast_green=True, **layout):
    """A synthetic TRAP-stained section of bone: red-magenta osteoclasts, hematoxylin nuclei.

    Same tissue as :func:`he_section` with the same seed and field of view. Osteoclasts lie on
    the bone surface as domes 24–56 µm long with 0–6 nuclei; some lie off bone, some touch a
    neighbour; small TRAP+ granules in the marrow are not osteoclasts.

    Parameters
    ----------
    shape, pixel_size_um, seed, **layout
        As for :func:`he_section`.
    fast_green : bool
        Counterstain the bone matrix light blue-green (fast green) as many labs do.

    Returns
    -------
    Synthetic
        ``truth`` as for :func:`he_section`, with the osteoclast symbols of ``measurements``
        computed from the true osteoclasts (``counted``: on bone with at least one nucleus).
    """
    return _section("trap_section", shape, pixel_size_um, seed, "trap", fast_green=fast_green, **layout)
