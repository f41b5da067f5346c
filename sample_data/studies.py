"""Synthetic treatment studies: radiographs of mouse tibiae with a known treatment effect.

Each arm multiplies the expected osteolytic lesion area of the control arm by a known factor, so a
study analysis can be checked against the true percent change (0.4 -> -60 %; 1.0 -> a null arm).
Animals vary around their arm's mean (log-normal) and the two limbs of an animal around the
animal's burden, as in a real study; every lesion is drawn into the image and its area is
counted from the drawn mask, so the truth is exact.
"""

from dataclasses import dataclass
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from boneimg.io.atomic import atomic_path
from boneimg.io.image import Image
from boneimg.io.write import save_image, save_labels, save_table

from .synthetic import Synthetic

ARMS = {"vehicle": 1.0, "inactive": 1.0, "combination": 0.4}
_MAX_LESION_MM2 = 0.5  # a larger area is split over more lesions, so they fit in the bone


def lesion_radiograph(lytic_area_mm2, *, pixel_size_um=25.0, field_mm=(8.0, 4.0), seed=0):
    """A synthetic radiograph of a proximal mouse tibia with osteolytic lesions of a given area.

    The bone is a hollow cylinder seen from the side (cortex 150 µm, shaft 1.4 mm wide, flaring
    to 2.2 mm at the metaphysis at the top, with trabecular bone there); brightness follows
    X-ray attenuation along the projected bone thickness. Lytic lesions are elliptical holes in
    the upper half of the bone that remove 70-85 % of the bone along the beam, so they look
    darker than the bone around them.

    Parameters
    ----------
    lytic_area_mm2 : float
        Target total lesion area in mm² (0 for none, at most about 1.5), split over lesions of
        about 0.5 mm² at most that do not overlap and lie inside the marrow cavity of the
        metaphysis and upper diaphysis.
    pixel_size_um : float
        Pixel size in µm; the anatomy keeps its size in µm.
    field_mm : tuple of float
        Field of view (height, width) in mm; the shaft runs along the height.
    seed : int

    Returns
    -------
    Synthetic
        uint16 image, modality "radiograph"; ``truth`` holds ``bone`` (outline mask), ``lytic``
        (lesion mask), ``lytic_area_mm2`` (area of the drawn lesion mask) and ``n_lesions``.
    """
    if not (math.isfinite(lytic_area_mm2) and lytic_area_mm2 >= 0):
        raise ValueError(f"lytic_area_mm2 must be a non-negative number, got {lytic_area_mm2!r}")
    rng = np.random.default_rng(seed)
    shape = tuple(round(1000 * f / pixel_size_um) for f in field_mm)
    y_um, x_um = (np.indices(shape, dtype=np.float64) + 0.5) * pixel_size_um
    height_um = shape[0] * pixel_size_um
    x_um -= shape[1] * pixel_size_um / 2
    top = 0.08 * height_um                                     # proximal end of the bone
    flare = np.clip(1 - (y_um - top) / (0.3 * height_um), 0, 1)  # 1 at the metaphysis, 0 on the shaft
    outer = 700.0 + 400.0 * flare                              # outer radius in µm
    inner = outer - 150.0                                      # endosteal radius (cortex 150 µm)
    bone = (np.abs(x_um) < outer) & (y_um > top)
    chord = lambda r: 2 * np.sqrt(np.clip(r**2 - x_um**2, 0, None))  # noqa: E731 - path through a disc
    texture = ndi.gaussian_filter(rng.standard_normal(shape), 60.0 / pixel_size_um)
    trabecular = flare * np.clip(0.35 + 0.15 * texture / texture.std(), 0, 1)
    thickness_um = np.where(bone, chord(outer) - chord(inner) * (1 - trabecular), 0.0)

    upper = bone & (y_um < top + 0.5 * height_um)  # metaphysis and upper diaphysis
    lytic = _lesions(lytic_area_mm2, upper, x_um, y_um, inner, rng)
    depth = rng.uniform(0.7, 0.85)
    thickness_um = np.where(lytic, thickness_um * (1 - depth), thickness_um)

    soft_um = 2 * np.sqrt(np.clip(2200.0**2 - x_um**2, 0, None))  # the limb's soft tissue
    signal = 1 - np.exp(-(3.0 * thickness_um + 0.15 * soft_um) / 1000.0)
    signal = ndi.gaussian_filter(signal, 20.0 / pixel_size_um) + rng.normal(0, 0.01, shape)
    data = np.round(np.clip(signal, 0, 1) * 60000).astype(np.uint16)
    meta = {"format": "synthetic", "generator": "lesion_radiograph", "seed": seed}
    image = Image(data, "yx", (pixel_size_um, pixel_size_um), "radiograph", meta)
    truth = {"bone": bone, "lytic": lytic, "n_lesions": int(ndi.label(lytic)[1]),
             "lytic_area_mm2": float(lytic.sum()) * pixel_size_um**2 / 1e6}
    return Synthetic(image, truth)


def _lesions(area_mm2, allowed, x_um, y_um, inner_um, rng):
    """Non-overlapping elliptical lesions inside `allowed` whose areas add up to `area_mm2`."""
    lytic = np.zeros(allowed.shape, bool)
    if area_mm2 == 0:
        return lytic
    n = max(int(rng.integers(1, 4)), math.ceil(area_mm2 / _MAX_LESION_MM2))
    parts = rng.dirichlet(np.full(n, 4.0)) * area_mm2 * 1e6  # µm² each, of similar size
    rows, cols = np.nonzero(allowed)
    for part in parts:
        for _ in range(200):
            ratio = rng.uniform(0.6, 1.0)
            a = math.sqrt(part / (math.pi * ratio))  # semi-axes a (across), a * ratio (along)
            i = rng.integers(len(rows))
            cy, cx = y_um[rows[i], cols[i]], x_um[rows[i], cols[i]]
            ellipse = ((x_um - cx) / a) ** 2 + ((y_um - cy) / (a * ratio)) ** 2 <= 1
            # inside the marrow cavity (lesions start there) and clear of the other lesions
            fits = np.all(np.abs(x_um[ellipse]) < inner_um[ellipse]) and np.all(allowed[ellipse])
            if ellipse.any() and fits and not (ndi.binary_dilation(ellipse, iterations=2) & lytic).any():
                lytic |= ellipse
                break
        else:
            raise ValueError(f"no room for a {part / 1e6:.3g} mm² lesion; use a smaller area")
    return lytic


@dataclass
class SyntheticStudy:
    """A synthetic study written to disk.

    Attributes
    ----------
    folder : pathlib.Path
        The ``GROUP/ANIMAL/image`` folder of the radiographs (``out_dir/images``).
    design : pandas.DataFrame
        One row per image: ``path`` (absolute), ``animal``, ``group``, ``bone``.
    truth : pandas.DataFrame
        The design plus ``lesion_mask`` (path of the drawn lesion mask, an OME-TIFF with the
        image's pixel size), ``Lytic.Ar_mm2`` (its area) and ``Lytic.N`` per image.
    percent_change : dict
        Arm -> true percent change of the expected lytic area versus the control arm.
    control : str
        The control arm.
    """

    folder: Path
    design: pd.DataFrame
    truth: pd.DataFrame
    percent_change: dict
    control: str


def radiograph_study(out_dir, *, arms=None, n_animals=6, n_images=2, lytic_area_mm2=0.5,
                     animal_cv=0.3, image_cv=0.15, pixel_size_um=25.0, seed=0):
    """Write a synthetic radiograph study with its design table and ground truth.

    Writes ``out_dir/images/GROUP/ANIMAL/*.ome.tif`` (the radiographs),
    ``out_dir/truth/GROUP/ANIMAL/*_lytic.ome.tif`` (their lesion masks), ``out_dir/design.csv``
    (paths relative to it) and ``out_dir/truth.csv``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to write into (created).
    arms : dict, optional
        Group -> factor on the control's expected lytic area; the first group is the control.
        Default: vehicle (control), inactive (1.0, a null arm), combination (0.4: lytic area
        reduced by 60 %).
    n_animals : int
        Animals per group.
    n_images : int
        Radiographs per animal, alternating left and right tibia.
    lytic_area_mm2 : float
        Expected lytic area per radiograph in the control group.
    animal_cv, image_cv : float
        Coefficients of variation (log-normal) between the animals of a group and between the
        images of an animal.
    pixel_size_um : float
    seed : int

    Returns
    -------
    SyntheticStudy
    """
    arms = dict(ARMS if arms is None else arms)
    control = next(iter(arms))
    out = Path(out_dir).resolve()
    rng = np.random.default_rng(seed)
    rows = []
    for group, factor in arms.items():
        for k in range(n_animals):
            animal = f"{group[:3].upper()}{k + 1:02d}"
            burden = lytic_area_mm2 * factor / arms[control] * _lognormal(rng, animal_cv)
            for j in range(n_images):
                bone = ("left", "right")[j % 2] + " tibia"
                synthetic = lesion_radiograph(burden * _lognormal(rng, image_cv), pixel_size_um=pixel_size_um,
                                              seed=int(rng.integers(2**31)))
                name = f"{animal}_{bone.replace(' ', '_')}_{j + 1}"
                path = out / "images" / group / animal / f"{name}.ome.tif"
                mask = out / "truth" / group / animal / f"{name}_lytic.ome.tif"
                save_image(path, synthetic.image, source="boneimg synthetic study")
                save_labels(mask, synthetic.truth["lytic"], synthetic.image.spacing_um, source=str(path))
                rows.append({"path": str(path), "animal": animal, "group": group, "bone": bone,
                             "lesion_mask": str(mask), "Lytic.Ar_mm2": synthetic.truth["lytic_area_mm2"],
                             "Lytic.N": synthetic.truth["n_lesions"]})
    truth = pd.DataFrame(rows)
    design = truth[["path", "animal", "group", "bone"]]
    with atomic_path(out / "design.csv") as tmp:
        design.assign(path=[os.path.relpath(p, out) for p in design["path"]]).to_csv(tmp, index=False)
    parameters = {"arms": arms, "n_animals": n_animals, "n_images": n_images, "lytic_area_mm2": lytic_area_mm2,
                  "animal_cv": animal_cv, "image_cv": image_cv, "pixel_size_um": pixel_size_um, "seed": seed}
    save_table(out / "truth.csv", truth, source="boneimg synthetic study", parameters=parameters)
    change = {g: 100 * (f / arms[control] - 1) for g, f in arms.items() if g != control}
    return SyntheticStudy(out / "images", design, truth, change, control)


def _lognormal(rng, cv):
    """A log-normal factor with mean 1 and coefficient of variation `cv`."""
    sigma = math.sqrt(math.log1p(cv**2))
    return float(rng.lognormal(-sigma**2 / 2, sigma))
