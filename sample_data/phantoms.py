"""Synthetic micro-CT long-bone phantoms and radiographs with exact ground truth.

Two generators:

- :func:`ct_long_bone`: a quick lesion-free long bone whose size follows the array shape.
- :func:`lesion_phantom`: a mouse-femur-sized long bone in physical units (cortex, a trabecular
  network in the metaphysis) with controlled osteolytic lesions (a trabecular lesion, a
  through-and-through lesion, cortical perforations of known diameter, a non-perforating
  endosteal erosion) and osteoblastic lesions (an intramedullary woven-bone mass, a periosteal
  deposit), plus the lesion-free baseline scan of the same bone. The object is drawn on a grid
  `oversample` times finer than the voxels and averaged down, so voxels carry partial volume
  like a scanner's, and every truth volume is exact to 1/oversample³ of a voxel whatever the
  voxel size, anisotropic voxels included.

:func:`radiograph` projects either phantom to a 2-D X-ray with the same ground truth.

Analytic shapes of known thickness in voxels, for local thickness (Tb.Th) checks: :func:`plate`,
:func:`rod` and :func:`ball`.
"""

import numpy as np
from scipy import ndimage as ndi

from boneimg.errors import BoneImgError
from boneimg.io.image import Image, spacing_tuple

from .synthetic import Synthetic

KINDS = ("none", "lytic", "blastic", "mixed")


def plate(thickness_vox):
    """A plate `thickness_vox` voxels thick (axis 0) with 4 voxels of the other phase on each
    side, 24 x 24 voxels wide: its faces run along the array's edges on the four sides.

    Returns
    -------
    ndarray of bool, shape (thickness_vox + 8, 24, 24)
        Its true thickness is `thickness_vox` voxels (the voxel cubes' faces).
    """
    shape = np.zeros((thickness_vox + 8, 24, 24), dtype=bool)
    shape[4:4 + thickness_vox] = True
    return shape


def tilted_plate(thickness_vox, normal, size=40):
    """A plate `thickness_vox` voxels thick whose faces have the unit normal along `normal`
    (z, y, x): the voxels whose centres lie within ``thickness_vox / 2`` of a plane through a
    point 0.23 voxel off the array's middle voxel centre (so no face runs through voxel centres).

    Returns
    -------
    ndarray of bool, shape (size, size, size)
        Away from the array's faces its true thickness is `thickness_vox` voxels.
    """
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    z, y, x = np.mgrid[:size, :size, :size] - size // 2
    return np.abs((z + 0.23) * normal[0] + y * normal[1] + x * normal[2]) < thickness_vox / 2


def rod(diameter_vox, rng):
    """A rod along axis 0 of diameter `diameter_vox` voxels: the voxels whose centres lie
    inside a cylinder whose axis is shifted by a random sub-voxel offset (uniform ±0.5), or
    runs through voxel centres.

    Parameters
    ----------
    diameter_vox : float
        True diameter in voxels.
    rng : int, numpy.random.Generator or None
        Seed or generator of the offset; None puts the axis through voxel centres.

    Returns
    -------
    ndarray of bool, shape (int(2 d) + 6, int(d) + 6, int(d) + 6)
    """
    n = int(diameter_vox) + 6
    centre = _centre(n, 2, rng)
    y, x = np.mgrid[:n, :n]
    disc = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 < (diameter_vox / 2) ** 2
    return np.broadcast_to(disc, (int(2 * diameter_vox) + 6, n, n)).copy()


def ball(diameter_vox, rng):
    """A ball of diameter `diameter_vox` voxels: the voxels whose centres lie inside a sphere
    whose centre is shifted by a random sub-voxel offset (uniform ±0.5 per axis), or lies on a
    voxel centre.

    Parameters
    ----------
    diameter_vox : float
        True diameter in voxels.
    rng : int, numpy.random.Generator or None
        Seed or generator of the offset; None centres the sphere on a voxel centre.

    Returns
    -------
    ndarray of bool, shape (int(d) + 6,) * 3
    """
    n = int(diameter_vox) + 6
    centre = _centre(n, 3, rng)
    z, y, x = np.mgrid[:n, :n, :n]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < (diameter_vox / 2) ** 2


def _centre(n, ndim, rng):
    """The array's middle shifted by a uniform ±0.5 voxel per axis, or its middle voxel centre
    if `rng` is None."""
    if rng is None:
        return np.full(ndim, float(n // 2))
    return (n - 1) / 2 + np.random.default_rng(rng).uniform(-0.5, 0.5, ndim)
DTYPES = ("uint8", "uint16", "float32", "int16")

# Geometry of the bone in µm (a mouse femur shaft is about 1 x 1.4 mm across).
PERIOSTEAL_RADII_UM = (450.0, 520.0)  # semi-axes of the periosteal ellipse, (y, x)
CORTEX_UM = 100.0
MARGIN_UM = (200.0, 180.0)  # soft tissue around the bone, (y, x)
METAPHYSIS = 0.55  # fraction of the length, from z = 0, that holds trabeculae
TRABECULAR_PERIOD_UM = 500.0  # gyroid sheets about 40 µm thick, BV/TV about 0.2
GYROID_HALF_WIDTH = 0.38

# Grey values as fractions of full scale: soft tissue, marrow, tumour, bone, woven bone.
SOFT, MARROW, TUMOUR, BONE = 0.10, 0.12, 0.14, 0.85
WOVEN_MINERAL = 0.9  # woven (blastic) bone is less mineralised than lamellar bone
WOVEN = MARROW + WOVEN_MINERAL * (BONE - MARROW)


def ct_long_bone(shape=(96, 128, 128), voxel_size_um=10.0, *, seed=0):
    """A synthetic micro-CT volume of a long bone: cortical shell with trabeculae at one end.

    Parameters
    ----------
    shape : tuple of int
        Volume size (z, y, x) in voxels; the shaft runs along z.
    voxel_size_um : float
        Isotropic voxel size in µm; bone dimensions are fixed in µm.
    seed : int

    Returns
    -------
    Synthetic
        uint8 grey values with scanner-like blur and noise; ``truth`` holds ``bone``,
        ``cortical`` and ``trabecular`` boolean masks.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float32)
    cy, cx = (shape[1] - 1) / 2, (shape[2] - 1) / 2
    r_um = np.hypot(y - cy, x - cx) * voxel_size_um
    outer_um = 0.42 * min(shape[1:]) * voxel_size_um
    cortex_um = max(2.5 * voxel_size_um, 0.12 * outer_um)
    cortical = (r_um <= outer_um) & (r_um > outer_um - cortex_um)
    marrow = r_um <= outer_um - cortex_um
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 40.0 / voxel_size_um)
    sheets = np.abs(noise) < 0.12 * noise.std() * 2.5
    metaphysis = z < shape[0] * 0.5
    trabecular = sheets & marrow & metaphysis
    bone = cortical | trabecular
    grey = np.where(bone, 190.0, np.where(r_um <= outer_um, 45.0, 15.0))
    grey = ndi.gaussian_filter(grey, 0.8) + rng.normal(0, 8, shape)
    volume = np.clip(grey, 0, 255).astype(np.uint8)
    image = Image(volume, "zyx", (voxel_size_um,) * 3, "ct",
                  {"format": "synthetic", "generator": "ct_long_bone", "seed": seed})
    return Synthetic(image, {"bone": bone, "cortical": cortical, "trabecular": trabecular})


def lesion_phantom(kind="mixed", *, voxel_size_um=10.0, length_um=1200.0, seed=0, dtype="uint8",
                   noise_sd=0.06, blur_um=8.0, oversample=2):
    """A long bone with controlled lytic and blastic lesions, its baseline scan and exact truth.

    The shaft runs along z: the metaphysis (z < 0.55 length) holds a trabecular network, the
    diaphysis only marrow. Lesions by `kind`:

    - lytic: a trabecular lesion (an ellipsoid 600 x 460 x 600 µm in the metaphysis), a
      through-and-through lesion (cylinder of 160 µm radius along y: the front and back cortex
      perforated, visible on the radiograph), three cortical perforations 100, 70 and 50 µm
      wide and one endosteal erosion that does not go through the cortex;
    - blastic: an intramedullary woven-bone mass and a periosteal deposit (woven bone is 90 %
      as mineralised as cortex);
    - mixed: all of them; none: no lesion.

    Parameters
    ----------
    kind : {"none", "lytic", "blastic", "mixed"}
    voxel_size_um : float or (float, float, float)
        Voxel size (z, y, x) in µm; the bone keeps its physical size, so the shape follows.
    length_um : float
        Length of the imaged shaft in µm; at least 1000 for the lesion layout.
    seed : int
        Seeds the trabecular network, lesion placement jitter and scanner noise.
    dtype : {"uint8", "uint16", "float32", "int16"}
        Storage of the grey values: 8/16-bit scanner counts, float attenuation, or signed
        Hounsfield-like units (soft tissue 0, bone 3000).
    noise_sd : float
        Gaussian scanner noise as a fraction of full scale (bone is 0.85, marrow 0.16).
    blur_um : float
        Gaussian sigma of the scanner's point spread function in µm.
    oversample : int
        The object is drawn on a grid this many times finer per axis, then averaged.

    Returns
    -------
    Synthetic
        ``image``: the lesion scan. ``truth``: ``reference`` (Image, the lesion-free baseline
        scan with its own noise), boolean masks (majority of each voxel) ``bone``,
        ``reference_bone``, ``lytic``, ``blastic``, ``periosteal`` (inside the baseline's
        periosteal envelope), ``endosteal`` (inside its endosteal envelope), ``cortical``
        (between them); ``lesions`` (uint8, 1 lytic, 2 blastic); ``mineral`` and
        ``reference_mineral`` (float32 fraction of cortical mineral per voxel, for
        :func:`radiograph`); ``volumes_mm3`` (exact partial volumes: ``Lytic``, ``Lytic.Tb``,
        ``Lytic.Ct``, ``Blastic``, ``Blastic.Ma``, ``Blastic.Ps``, ``TV`` of the baseline,
        ``BV``, ``reference BV``); ``perforations`` (one dict per hole through the cortex:
        ``diameter_um``, ``area_mm2``, centre) and ``n_perforations``; ``lesion_class`` (the
        class by the 1 %-of-TV rule); ``kind``.
    """
    if kind not in KINDS:
        raise BoneImgError(f"kind must be one of {KINDS}, got {kind!r}")
    if dtype not in DTYPES:
        raise BoneImgError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if length_um < 1000:
        raise BoneImgError(f"length_um must be at least 1000 µm for the lesion layout, got {length_um}")
    if int(oversample) != oversample or oversample < 1:
        raise BoneImgError(f"oversample must be a positive integer, got {oversample!r}")
    spacing = spacing_tuple(voxel_size_um, 3, name="voxel_size_um")
    rng = np.random.default_rng(seed)
    extent = (length_um, 2 * (PERIOSTEAL_RADII_UM[0] + MARGIN_UM[0]),
              2 * (PERIOSTEAL_RADII_UM[1] + MARGIN_UM[1]))
    shape = tuple(int(round(e / s)) for e, s in zip(extent, spacing))
    network = _Gyroid(rng)  # drawn first: one seed gives the same bone for every kind
    lesions = _lesion_layout(kind, length_um, rng)

    fields = _draw(shape, spacing, int(oversample), length_um, network, lesions)
    voxel_mm3 = float(np.prod(spacing)) / 1e9
    volumes = {name: float(fields[key].sum(dtype=np.float64)) * voxel_mm3 for name, key in (
        ("Lytic.Tb", "lytic_tb"), ("Lytic.Ct", "lytic_ct"), ("Blastic.Ma", "blastic_ma"),
        ("Blastic.Ps", "blastic_ps"), ("TV", "periosteal"), ("BV", "bone"),
        ("reference BV", "reference_bone"))}
    volumes["Lytic"] = volumes["Lytic.Tb"] + volumes["Lytic.Ct"]
    volumes["Blastic"] = volumes["Blastic.Ma"] + volumes["Blastic.Ps"]
    lytic = (fields["lytic_tb"] + fields["lytic_ct"]) >= 0.5
    blastic = (fields["blastic_ma"] + fields["blastic_ps"]) >= 0.5
    label = np.zeros(shape, np.uint8)
    label[lytic] = 1
    label[blastic] = 2

    meta = {"format": "synthetic", "generator": "lesion_phantom", "kind": kind, "seed": seed}
    image = Image(_scan(fields["grey"], spacing, blur_um, noise_sd, dtype, rng), "zyx", spacing, "ct", meta)
    reference = Image(_scan(fields["reference_grey"], spacing, blur_um, noise_sd, dtype, rng), "zyx",
                      spacing, "ct", {**meta, "baseline": True})
    perforations = [p for lesion in lesions for p in lesion.get("perforations", ())]
    truth = {
        "kind": kind,
        "reference": reference,
        "bone": fields["bone"] >= 0.5,
        "reference_bone": fields["reference_bone"] >= 0.5,
        "lytic": lytic,
        "blastic": blastic,
        "lesions": label,
        "periosteal": fields["periosteal"] >= 0.5,
        "endosteal": fields["endosteal"] >= 0.5,
        "cortical": (fields["periosteal"] >= 0.5) & ~(fields["endosteal"] >= 0.5),
        "mineral": fields["mineral"],
        "reference_mineral": fields["reference_mineral"],
        "volumes_mm3": volumes,
        "perforations": perforations,
        "n_perforations": len(perforations),
        "lesion_class": _lesion_class(volumes),
        "lesion_layout": [{k: v for k, v in lesion.items() if k != "perforations"} for lesion in lesions],
    }
    return Synthetic(image, truth)


def radiograph(phantom, *, attenuation_per_mm=0.8, soft_tissue_per_mm=0.1, limb_margin_um=1500.0,
               noise_sd=0.005, blur_um=10.0, baseline=False, seed=0):
    """Project a synthetic CT phantom along y into a 2-D radiograph (bone is bright).

    The limb around the bone is a soft-tissue cylinder (its axis along z) reaching
    `limb_margin_um` beyond the CT field of view on either side in x, with 300 µm of air
    beyond; the image is widened to hold it.

    Parameters
    ----------
    phantom : Synthetic
        Result of :func:`ct_long_bone` or :func:`lesion_phantom`.
    attenuation_per_mm : float
        Linear attenuation of cortical bone in 1/mm (about 0.8 at the 20-25 keV of a cabinet
        X-ray system).
    soft_tissue_per_mm : float
        Attenuation of soft tissue in 1/mm.
    limb_margin_um : float
        Soft tissue beside the CT field of view, in µm.
    noise_sd : float
        Gaussian detector noise as a fraction of full scale.
    blur_um : float
        Gaussian sigma of the detector blur in µm.
    baseline : bool
        Project the lesion-free baseline of a :func:`lesion_phantom` instead (the reference
        limb of a radiograph analysis).
    seed : int
        Seeds the detector noise.

    Returns
    -------
    Synthetic
        uint16 image of shape (z, x + margins) with the phantom's spacing.
        ``truth["bone"]``: the projected bone outline. For a lesion phantom also
        ``truth["lytic"]``: pixels inside the outline where the lesions removed at least half
        of the baseline's bone along the ray (radiolucent; both bone paths blurred as the
        detector blurs the image), in components of at least 0.005 mm² (as the analysis
        counts lesions), with ``lytic_area_mm2`` and ``lytic_n``.
    """
    dz, dy, dx = phantom.image.spacing_um
    truth = phantom.truth
    if baseline and "reference_mineral" not in truth:
        raise BoneImgError("baseline=True needs a lesion_phantom (it has a lesion-free baseline)")
    pad = int(round((limb_margin_um + 300.0) / dx))

    def bone_path_mm(mineral):
        return np.pad(mineral.sum(axis=1, dtype=np.float64) * dy / 1000.0, ((0, 0), (pad, pad)))

    path_mm = bone_path_mm(truth.get("reference_mineral" if baseline else "mineral", truth["bone"]))
    nx = path_mm.shape[1]
    x_um = (np.arange(nx) + 0.5) * dx - nx * dx / 2
    limb_um = (nx - 2 * pad) * dx / 2 + limb_margin_um
    soft_mm = 2 * np.sqrt(np.clip(limb_um ** 2 - x_um ** 2, 0, None)) / 1000.0
    signal = 1.0 - np.exp(-attenuation_per_mm * path_mm - soft_tissue_per_mm * soft_mm[None, :])
    rng = np.random.default_rng(seed)
    if blur_um > 0:
        signal = ndi.gaussian_filter(signal, (blur_um / dz, blur_um / dx))
    signal = signal + rng.normal(0.0, noise_sd, signal.shape)
    image = np.round(np.clip(signal, 0, 1) * 60000).astype(np.uint16)
    meta = {"format": "synthetic", "generator": "radiograph", "projection_axis": "y", "baseline": baseline}
    result = {"bone": path_mm > 0}
    if "reference_mineral" in truth:
        reference_mm = bone_path_mm(truth["reference_mineral"])
        result["bone"] = (reference_mm > 0) | (path_mm > 0)
        if not baseline:
            # radiolucent at the detector's resolution: the paths blurred as the image is
            sharp_mm, blurred_mm = reference_mm, path_mm
            if blur_um > 0:
                sharp_mm, blurred_mm = (ndi.gaussian_filter(a, (blur_um / dz, blur_um / dx))
                                        for a in (reference_mm, path_mm))
            lytic = (reference_mm > 0) & (sharp_mm - blurred_mm >= 0.5 * sharp_mm)
            labels, n = ndi.label(lytic, structure=np.ones((3, 3), bool))
            sizes = np.bincount(labels.ravel())
            keep = sizes * dz * dx / 1e6 >= 0.005
            keep[0] = False
            lytic = keep[labels]
            result["lytic"] = lytic
            result["lytic_area_mm2"] = float(lytic.sum()) * dz * dx / 1e6
            result["lytic_n"] = int(keep.sum())
    return Synthetic(Image(image, "yx", (dz, dx), "radiograph", meta), result)


class _Gyroid:
    """A randomly rotated, irregular gyroid sheet network: trabecular plates about 40 µm thick."""

    def __init__(self, rng):
        self.rotation = np.linalg.qr(rng.standard_normal((3, 3)))[0]
        self.phase = rng.uniform(0, TRABECULAR_PERIOD_UM, 3)
        # low-frequency modulation: irregular plate spacing and holes through some plates
        self.waves = rng.standard_normal((4, 3))
        self.waves *= 2 * np.pi / 900.0 / np.linalg.norm(self.waves, axis=1, keepdims=True)
        self.wave_phase = rng.uniform(0, 2 * np.pi, 4)

    def sheets(self, z, y, x):
        k = 2 * np.pi / TRABECULAR_PERIOD_UM
        q = [k * (self.rotation[i, 0] * z + self.rotation[i, 1] * y + self.rotation[i, 2] * x + self.phase[i])
             for i in range(3)]
        g = (np.sin(q[0]) * np.cos(q[1]) + np.sin(q[1]) * np.cos(q[2]) + np.sin(q[2]) * np.cos(q[0]))
        waves = [np.cos(w[0] * z + w[1] * y + w[2] * x + p) for w, p in zip(self.waves, self.wave_phase)]
        g = g + 0.25 * (waves[0] + waves[1])
        return (np.abs(g) < GYROID_HALF_WIDTH) & (waves[2] + waves[3] > -1.4)


def _lesion_layout(kind, length_um, rng):
    """The lesions of a phantom kind, as dicts of shape parameters in µm (z from the scan start)."""
    ry, rx = PERIOSTEAL_RADII_UM
    metaphysis = METAPHYSIS * length_um
    jitter = lambda scale: float(rng.uniform(-scale, scale))  # noqa: E731
    layout = []
    if kind in ("lytic", "mixed"):
        # flattened along y, the radiograph's beam: on the radiograph it thins the trabecular
        # shadow but removes less than half of the bone along any ray (not radiolucent)
        layout.append({"name": "trabecular lytic", "shape": "ellipsoid", "lytic": True,
                       "centre": (metaphysis / 2 + jitter(20), jitter(20), -60 + jitter(20)),
                       "radii": (300.0, 230.0, 300.0)})
        through_z = metaphysis + 160 + jitter(10)
        through_x = -120 + jitter(20)
        layout.append({"name": "through lytic", "shape": "y-cylinder", "lytic": True,
                       "centre": (through_z, 0.0, through_x), "radius": 160.0,
                       "perforations": [_hole(through_z, side * ry, through_x, 320.0) for side in (-1, 1)]})
        layout.append({"name": "endosteal erosion", "shape": "ball", "lytic": True,
                       "centre": (through_z + jitter(20), 0.0, rx - CORTEX_UM - 40), "radius": 110.0})
        for z, angle, diameter in ((metaphysis + 80, 200, 100.0), (metaphysis + 280, 160, 70.0),
                                   (length_um - 100, 190, 50.0)):
            theta = np.deg2rad(angle + jitter(5))
            direction = (0.0, np.sin(theta), np.cos(theta))
            z = z + jitter(10)
            layout.append({"name": f"perforation {diameter:g} µm", "shape": "radial cylinder", "lytic": True,
                           "centre": (z, 0.0, 0.0), "direction": direction, "radius": diameter / 2,
                           "perforations": [_hole(z, ry * direction[1], rx * direction[2], diameter)]})
    if kind in ("blastic", "mixed"):
        layout.append({"name": "intramedullary blastic", "shape": "lumpy ellipsoid", "lytic": False,
                       "centre": (length_um - 200 + jitter(15), jitter(20), 180 + jitter(15)),
                       "radii": (170.0, 150.0, 120.0), "phase": rng.uniform(0, 2 * np.pi, 3)})
        # a ball centred inside the cortex, kept only outside the periosteal surface: a cap of
        # new bone about 100 µm high
        layout.append({"name": "periosteal blastic", "shape": "ball", "lytic": False, "outside": True,
                       "centre": (length_um - 220 + jitter(15), 0.0, rx - 130), "radius": 230.0})
    return layout


def _hole(z, y, x, diameter_um):
    return {"centre_um": (float(z), float(y), float(x)), "diameter_um": diameter_um,
            "area_mm2": float(np.pi * diameter_um ** 2 / 4 / 1e6)}


def _inside(lesion, z, y, x):
    cz, cy, cx = lesion["centre"]
    dz, dy, dx = z - cz, y - cy, x - cx
    if lesion["shape"] == "ball":
        return dz ** 2 + dy ** 2 + dx ** 2 <= lesion["radius"] ** 2
    if lesion["shape"] == "ellipsoid":
        az, ay, ax = lesion["radii"]
        return (dz / az) ** 2 + (dy / ay) ** 2 + (dx / ax) ** 2 <= 1
    if lesion["shape"] == "y-cylinder":
        return dz ** 2 + dx ** 2 <= lesion["radius"] ** 2
    if lesion["shape"] == "radial cylinder":  # from the shaft axis outwards along `direction`
        _, uy, ux = lesion["direction"]
        along = dy * uy + dx * ux
        across2 = dz ** 2 + (dy - along * uy) ** 2 + (dx - along * ux) ** 2
        return (along > 0) & (across2 <= lesion["radius"] ** 2)
    az, ay, ax = lesion["radii"]
    p = lesion["phase"]
    lumps = 1 + 0.12 * (np.sin(dz / 60 + p[0]) * np.sin(dy / 50 + p[1]) + np.sin(dx / 45 + p[2]))
    return (dz / az) ** 2 + (dy / ay) ** 2 + (dx / ax) ** 2 <= lumps ** 2


def _draw(shape, spacing, oversample, length_um, network, lesions):
    """Draw the phantom on the fine grid, a few slices at a time, and average it to voxels."""
    ry, rx = PERIOSTEAL_RADII_UM
    names = ("grey", "reference_grey", "mineral", "reference_mineral", "bone", "reference_bone",
             "lytic_tb", "lytic_ct", "blastic_ma", "blastic_ps", "periosteal", "endosteal")
    out = {name: np.empty(shape, np.float32) for name in names}
    fine = [s / oversample for s in spacing]
    y = ((np.arange(shape[1] * oversample) + 0.5) * fine[1] - shape[1] * spacing[1] / 2)[None, :, None]
    x = ((np.arange(shape[2] * oversample) + 0.5) * fine[2] - shape[2] * spacing[2] / 2)[None, None, :]
    step = max(1, 8 // oversample)
    for z0 in range(0, shape[0], step):
        z1 = min(shape[0], z0 + step)
        z = ((np.arange(z0 * oversample, z1 * oversample) + 0.5) * fine[0])[:, None, None]
        periosteal = (y / ry) ** 2 + (x / rx) ** 2 <= 1
        endosteal = (y / (ry - CORTEX_UM)) ** 2 + (x / (rx - CORTEX_UM)) ** 2 <= 1
        periosteal, endosteal = np.broadcast_arrays(periosteal, endosteal, z)[:2]
        cortex = periosteal & ~endosteal
        trabecular = endosteal & (z < METAPHYSIS * length_um) & network.sheets(z, y, x)
        reference_bone = cortex | trabecular
        lytic_region = np.zeros(reference_bone.shape, bool)
        blastic_region = np.zeros(reference_bone.shape, bool)
        for lesion in lesions:
            region = lytic_region if lesion["lytic"] else blastic_region
            inside = _inside(lesion, z, y, x)
            region |= inside & ~periosteal if lesion.get("outside") else inside
        lytic = reference_bone & lytic_region
        blastic = blastic_region & ~reference_bone & ~lytic_region
        bone = (reference_bone & ~lytic) | blastic
        reference_grey = np.where(reference_bone, BONE, np.where(periosteal, MARROW, SOFT))
        grey = np.where(blastic, WOVEN, np.where(bone, BONE, np.where(
            lytic_region & periosteal, TUMOUR, np.where(periosteal, MARROW, SOFT))))
        fine_fields = {
            "grey": grey, "reference_grey": reference_grey,
            "mineral": np.where(blastic, WOVEN_MINERAL, bone.astype(np.float32)),
            "reference_mineral": reference_bone, "bone": bone, "reference_bone": reference_bone,
            "lytic_tb": lytic & trabecular, "lytic_ct": lytic & cortex,
            "blastic_ma": blastic & periosteal, "blastic_ps": blastic & ~periosteal,
            "periosteal": periosteal, "endosteal": endosteal,
        }
        for name, values in fine_fields.items():
            out[name][z0:z1] = _block_mean(values, oversample)
    return out


def _block_mean(values, factor):
    nz, ny, nx = (n // factor for n in values.shape)
    blocks = values.astype(np.float32).reshape(nz, factor, ny, factor, nx, factor)
    return blocks.mean(axis=(1, 3, 5))


def _scan(grey, spacing, blur_um, noise_sd, dtype, rng):
    """Scanner blur and noise on partial-volume grey values, stored as `dtype`."""
    image = ndi.gaussian_filter(grey, [blur_um / s for s in spacing]) if blur_um > 0 else grey.copy()
    image += rng.normal(0.0, noise_sd, image.shape).astype(np.float32)
    if dtype == "float32":
        return image
    if dtype == "int16":  # Hounsfield-like: soft tissue 0, bone 3000
        return np.round(4000 * (image - SOFT)).astype(np.int16)
    top = np.iinfo(dtype).max
    return np.round(np.clip(image, 0, 1) * top).astype(dtype)


def _lesion_class(volumes, threshold_pct=1.0):
    lytic = 100 * volumes["Lytic"] / volumes["TV"] > threshold_pct
    blastic = 100 * volumes["Blastic"] / volumes["TV"] > threshold_pct
    return {(False, False): "none", (True, False): "osteolytic",
            (False, True): "osteoblastic", (True, True): "mixed"}[(lytic, blastic)]
