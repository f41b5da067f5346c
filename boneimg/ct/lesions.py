"""Micro-CT analysis of a long bone: segmentation, compartments, lesions and perforations.

:func:`analyze_ct` runs in one of two modes, recorded on the result:

- "reference": an aligned lesion-free volume of the same bone (baseline scan or mirrored
  contralateral bone) is given. With R its bone mask and S the sample's, osteolytic bone is
  R and not S, osteoblastic bone S and not R; differences lying only in the one-voxel tolerance
  band where the surfaces of R and S meet are ignored (jitter of the surface between two scans),
  and so are components below ``min_lesion_volume_mm3``. Lytic bone is split by the reference's
  compartments into trabecular (Tb) and cortical (Ct), blastic bone into marrow (Ma, inside the
  reference's periosteal envelope) and periosteal (Ps).
- "no-reference": lesions are flagged against the bone expected from the bone itself
  (:mod:`.expected`); volumes are estimates.

The lesion class compares each volume with the tissue volume inside the reference's periosteal
envelope (the expected one without a reference), ``Ref.Tt.V_mm3``: above ``class_threshold_pct``
% of it a lesion type is present (see :func:`class_threshold_pct` to set it from control
animals). The trabecular morphometry keys (``TV_mm3``, ``BV/TV_pct``, ...) are those of
:func:`~boneimg.bone_morphometry` on the marrow compartment (or ``roi``).
"""

from dataclasses import dataclass, field
import math

import numpy as np
from scipy import ndimage as ndi

from ..errors import BoneImgError
from ..io.image import Image, as_image
from .cortex import (Compartments, Perforations, compartments, cortical_geometry, find_perforations,
                     shell_thickness)
from .expected import expected_changes
from .masks import CUBE, difference
from .morphometry import bone_morphometry
from ._inputs import require_memory
from .segment import METHODS, grey_values, segment_grey

CT_DEFAULTS = {
    # segmentation (see boneimg.ct.segment.segment_bone)
    "threshold": None,
    "threshold_mg_cm3": None,
    "calibration": None,
    "method": "iso50",
    "smooth_sigma_um": None,
    # trabecular morphometry: its region (default: the marrow compartment), sub-voxel thickness
    "roi": None,
    "subvoxel": False,
    # lesions
    "min_lesion_volume_mm3": 1e-4,
    "min_lesion_area_mm2": 0.005,  # for a 2-D slice
    "class_threshold_pct": 1.0,
    # compartments (see boneimg.ct.cortex.compartments)
    "envelope_closing_um": 250.0,
    "cortex_min_thickness_um": 50.0,
    "cortical_pore_um": 30.0,
    # no-reference mode (see boneimg.ct.expected.expected_changes)
    "void_factor": 1.8,
    "trabecular_zone_um": 300.0,
    "blastic_min_thickness_um": 120.0,
}
SEGMENT_KEYS = ("threshold", "threshold_mg_cm3", "calibration", "method", "smooth_sigma_um")
COMPARTMENT_KEYS = ("envelope_closing_um", "cortex_min_thickness_um", "cortical_pore_um")
EXPECTED_KEYS = ("void_factor", "trabecular_zone_um", "blastic_min_thickness_um")
LESION_PARTS = ("Lytic.Tb", "Lytic.Ct", "Blastic.Ma", "Blastic.Ps")
ALL_BONE = ("every voxel is bone: no marrow and no outside to judge lesions by "
            "(is the threshold below the soft-tissue grey values?)")
# peak working memory per voxel: grey values, masks, distance maps and labels
BYTES_PER_VOXEL = 80


@dataclass
class CTResult:
    """Result of :func:`analyze_ct`.

    Attributes
    ----------
    bone : ndarray of bool
        Bone mask of the image, same shape.
    lesions : ndarray of uint8
        0 none, 1 osteolytic, 2 osteoblastic. In no-reference mode, 1 marks missing cortex and
        trabecular voids (where bone is missing), 2 the new bone.
    measurements : dict
        Symbol -> value (see :func:`analyze_ct`).
    compartments : ndarray of uint8
        0 outside the bone, 1 cortical, 2 marrow compartment: the compartments that split the
        lesions (the reference's in reference mode).
    perforations : ndarray of int32
        One label per cortical perforation.
    perforation_areas_mm2 : list of float
        Cross-section of each perforation, in label order.
    mode : str
        "reference" or "no-reference".
    threshold : float
        Grey-value threshold of the segmentation (NaN when there was none).
    method : str
        How the threshold was chosen.
    parameters : dict
        Every parameter of the analysis, defaults included.
    provenance : dict
        How the measurements were made beyond the parameters: ``bone_morphometry`` -> the
        definitions, voxel size and Euler characteristics of the trabecular morphometry.
    voxel_size_um : tuple of float
    notes : dict
        Measurement (or "segmentation", "compartments", "lesions") -> why it is NaN or what
        the analysis had to assume.
    """

    bone: np.ndarray
    lesions: np.ndarray
    measurements: dict
    compartments: np.ndarray
    perforations: np.ndarray
    perforation_areas_mm2: list
    mode: str
    threshold: float
    method: str
    parameters: dict
    provenance: dict
    voxel_size_um: tuple
    notes: dict = field(default_factory=dict)


def class_threshold_pct(control_pct, *, k=3.0, floor_pct=1.0):
    """Lesion-class threshold from control bones: mean + k SD of their lesion % of tissue volume.

    Parameters
    ----------
    control_pct : sequence of float
        ``Lytic.V/Tt.V_pct`` (or blastic) measured on lesion-free control bones, e.g.
        baseline vs follow-up of control animals (the change a lesion must exceed).
    k : float
        Number of standard deviations.
    floor_pct : float
        The threshold is never below this (1 % of the tissue volume).

    Returns
    -------
    float
        Threshold in % of the tissue volume, for ``analyze_ct(..., class_threshold_pct=...)``.
    """
    values = np.asarray(control_pct, dtype=float)
    if values.size < 2 or not np.isfinite(values).all():
        raise BoneImgError(f"need at least 2 finite control values in %, got {control_pct!r}")
    return max(float(floor_pct), float(values.mean() + k * values.std(ddof=1)))


def lesion_class(lytic_pct, blastic_pct, threshold_pct):
    """"osteolytic", "osteoblastic", "mixed" or "none" from lesion volumes in % of tissue volume."""
    lytic = bool(lytic_pct > threshold_pct)  # NaN compares False
    blastic = bool(blastic_pct > threshold_pct)
    return {(False, False): "none", (True, False): "osteolytic",
            (False, True): "osteoblastic", (True, True): "mixed"}[(lytic, blastic)]


def analyze_ct(image, *, voxel_size_um=None, reference=None, **params):
    """Bone, compartments, morphometry, lesions and cortical perforations of a micro-CT scan.

    Parameters
    ----------
    image : Image or ndarray of shape (P, M, N) or (M, N)
        Grey values (bone bright; any integer or float dtype, signed HU included) of a long
        bone with its long axis along the first axis, or one cross-section.
    voxel_size_um : float or sequence of float, optional
        Voxel size in µm (overrides the Image's); required when the image does not carry it.
    reference : Image or ndarray, optional
        Aligned lesion-free volume of the same bone (baseline, or the mirrored contralateral
        bone), same shape: grey values, segmented with the sample's threshold (taken from the
        reference when automatic), or a boolean bone mask.
    **params
        Any of :data:`CT_DEFAULTS`: ``threshold`` (grey value), ``threshold_mg_cm3`` with
        ``calibration`` (:class:`~boneimg.ct.segment.DensityCalibration`), ``method``
        ("iso50"/"otsu"/"multiotsu"), ``smooth_sigma_um``; ``roi`` (boolean mask for the trabecular
        morphometry, default the marrow compartment); ``subvoxel`` (sub-voxel local thickness,
        see :func:`~boneimg.bone_morphometry`; 27x the memory and time); ``min_lesion_volume_mm3`` (2-D:
        ``min_lesion_area_mm2``); ``class_threshold_pct``; compartment and no-reference
        settings in µm (see :func:`boneimg.ct.cortex.compartments` and
        :func:`boneimg.ct.expected.expected_changes`).

    Returns
    -------
    CTResult
        ``measurements`` (3-D): ``Lytic.V_mm3``, ``Lytic.Tb.V_mm3``, ``Lytic.Ct.V_mm3``,
        ``Blastic.V_mm3``, ``Blastic.Ma.V_mm3``, ``Blastic.Ps.V_mm3``, ``Ref.Tt.V_mm3``,
        ``Lytic.V/Tt.V_pct``, ``Blastic.V/Tt.V_pct``, ``Lytic.N``, ``Blastic.N``,
        ``lesion_class``, ``Ct.Perf.N``, ``Ct.Perf.Ar_mm2`` (total), ``Ct.Th_um``,
        ``Ct.Ar_mm2``, ``Tt.Ar_mm2``, ``Ma.Ar_mm2``, ``Ct.Ar/Tt.Ar_pct`` (cortical geometry of
        the sample, see :func:`boneimg.ct.cortex.cortical_geometry`), ``BMD_mgHA_cm3``,
        ``TMD_mgHA_cm3``, and the :func:`~boneimg.bone_morphometry` keys of the trabecular
        region (``TV_mm3``, ``BV/TV_pct``, ``Tb.Th_um``, ``Tb.Sp.SD_um``, ``Tb.Sp.max_um``,
        ...). A 2-D slice reports areas (``Lytic.Ar_mm2``, ``Ref.Tt.Ar_mm2``,
        ``Lytic.Ar/Tt.Ar_pct``, ...) and NaN volumes. NaN values carry their reason in
        ``notes``. Every measurement is a number or, for ``lesion_class``, a string; how
        they were made is in ``method``, ``parameters`` and ``provenance``.

    Raises
    ------
    BoneImgError
        Unknown parameter, colour image, unknown voxel size, a reference of another shape or
        spacing, or a volume too large for the available memory.
    """
    p = _parameters(params)
    img = as_image(image, pixel_size_um=voxel_size_um)
    if img.axes not in ("zyx", "yx"):
        raise BoneImgError(f"analyze_ct needs a grey-value volume or slice, got axes {img.axes!r}",
                           path=img.path)
    spacing = img.require_spacing("analyze_ct")
    require_memory(img.spatial_shape, BYTES_PER_VOXEL * (2 if reference is not None else 1),
                   what="analyze_ct")
    two_d = img.ndim_spatial == 2
    grey, grey_notes = grey_values(img.data)
    ref = _reference_values(reference, img, spacing)
    seg, ref_bone, method, notes = _segment(grey, ref, spacing, p)
    notes["segmentation"] = grey_notes + notes.get("segmentation", [])
    if not notes["segmentation"]:
        del notes["segmentation"]

    # work on (z, y, x); a slice is a volume of one slice
    spacing3 = (min(spacing), *spacing) if two_d else tuple(spacing)
    bone = seg.bone[None] if two_d else seg.bone
    if ref_bone is not None and two_d:
        ref_bone = ref_bone[None]
    own = compartments(bone, spacing3, **{k: p[k] for k in COMPARTMENT_KEYS})
    own_thickness = shell_thickness(own, spacing3)
    cell_mm = float(np.prod(spacing)) / (1e6 if two_d else 1e9)
    min_cells = max(1, math.ceil(p["min_lesion_area_mm2" if two_d else "min_lesion_volume_mm3"] / cell_mm))
    if ref_bone is not None:
        found = _reference_lesions(bone, ref_bone, spacing3, min_cells, p)
    else:
        found = _expected_lesions(bone, own, own_thickness, spacing3, min_cells, p)
    if found.notes:
        notes["lesions"] = found.notes

    measurements, value_notes = _measure(two_d, found, ref_bone is not None, cell_mm, p)
    geometry, geometry_notes = cortical_geometry(bone, own, own_thickness, spacing3)
    measurements.update(geometry)
    value_notes.update(geometry_notes)
    squeeze = (lambda a: a[0]) if two_d else (lambda a: a)  # noqa: E731
    measurements.update(_density(grey, seg.bone, squeeze(own.periosteal), p["calibration"], value_notes))
    roi = squeeze(own.endosteal) if p["roi"] is None else _roi(p["roi"], grey.shape)
    morphometry, morphometry_method = _trabecular_morphometry(seg.bone, roi, spacing, value_notes, p["subvoxel"])
    measurements.update(morphometry)
    notes.update(value_notes)

    labels = np.zeros(bone.shape, np.uint8)
    labels[found.lytic] = 1
    labels[found.blastic] = 2
    recorded = {**p, "calibration": None if p["calibration"] is None else vars(p["calibration"]),
                "roi": None if p["roi"] is None else "given"}
    return CTResult(
        bone=seg.bone, lesions=squeeze(labels), measurements=measurements,
        compartments=squeeze(found.split.label_image()), perforations=squeeze(found.perforations.labels),
        perforation_areas_mm2=[float(a) for a in found.perforations.areas_mm2], mode=found.mode,
        threshold=seg.threshold, method=method, parameters=recorded,
        provenance={"bone_morphometry": morphometry_method}, voxel_size_um=tuple(spacing),
        notes=notes)


@dataclass
class _Found:
    """Lesions found in one mode: masks, sizes in voxels, the compartments that split them."""

    mode: str
    lytic: np.ndarray
    blastic: np.ndarray
    sizes: dict  # "Lytic.Tb", "Lytic.Ct", "Blastic.Ma", "Blastic.Ps" -> voxels (NaN: undefined)
    tissue: int  # voxels of the tissue volume the class is normalised by
    split: Compartments
    perforations: Perforations
    notes: list


def _segment(grey, ref, spacing, p):
    """Segment the image (and the reference); an automatic threshold is found on the reference
    and applied to both, so both masks share one threshold."""
    kwargs = {k: p[k] for k in SEGMENT_KEYS}
    if ref is None or ref.dtype == bool:
        seg = segment_grey(grey, spacing, **kwargs)
        return seg, ref, seg.method, {"segmentation": seg.notes} if seg.notes else {}
    ref_seg = segment_grey(ref, spacing, **kwargs)
    shared = ref_seg.method.split()[0] in METHODS
    if shared:
        kwargs["threshold"] = ref_seg.threshold
    seg = segment_grey(grey, spacing, **kwargs)
    method = f"{ref_seg.method} on the reference, applied to both" if shared else seg.method
    notes = seg.notes + [f"reference: {note}" for note in ref_seg.notes]
    return seg, ref_seg.bone, method, {"segmentation": notes} if notes else {}


def _reference_lesions(bone, ref_bone, spacing3, min_cells, p):
    """Reference mode: lesions are the differences from the aligned lesion-free bone."""
    split = compartments(ref_bone, spacing3, **{k: p[k] for k in COMPARTMENT_KEYS})
    lytic = difference(ref_bone, bone, min_cells)
    blastic = difference(bone, ref_bone, min_cells)
    sizes = {"Lytic.Tb": (lytic & split.endosteal).sum(), "Lytic.Ct": (lytic & split.cortical).sum(),
             "Blastic.Ma": (blastic & split.periosteal).sum(),
             "Blastic.Ps": (blastic & ~split.periosteal).sum()}
    perforations = find_perforations(bone, split, shell_thickness(split, spacing3), spacing3, lesion=lytic)
    return _Found("reference", lytic, blastic, sizes, split.periosteal.sum(), split, perforations, split.notes)


def _expected_lesions(bone, own, own_thickness, spacing3, min_cells, p):
    """No-reference mode: lesions are deviations from the bone expected from itself."""
    perforations = find_perforations(bone, own, own_thickness, spacing3)
    if bone.all():
        none = np.zeros_like(bone)
        return _Found("no-reference", none, none, dict.fromkeys(LESION_PARTS, float("nan")),
                      own.periosteal.sum(), own, perforations, [ALL_BONE])
    flags = expected_changes(bone, own, spacing3, min_voxels=min_cells, **{k: p[k] for k in EXPECTED_KEYS})
    sizes = {"Lytic.Tb": flags.trabecular_voids.sum() * np.nan_to_num(flags.expected_bv_tv),
             "Lytic.Ct": flags.cortical_loss.sum(),
             "Blastic.Ma": flags.marrow_new_bone.sum(), "Blastic.Ps": flags.periosteal_new_bone.sum()}
    return _Found("no-reference", flags.cortical_loss | flags.trabecular_voids,
                  flags.marrow_new_bone | flags.periosteal_new_bone, sizes, flags.expected_periosteal.sum(),
                  own, perforations, own.notes + flags.notes)


def _parameters(params):
    unknown = sorted(set(params) - set(CT_DEFAULTS))
    if unknown:
        raise BoneImgError(f"unknown analyze_ct parameter(s) {unknown}; valid: {sorted(CT_DEFAULTS)}")
    p = {**CT_DEFAULTS, **params}
    for key in ("min_lesion_volume_mm3", "min_lesion_area_mm2", "class_threshold_pct",
                "envelope_closing_um", "cortex_min_thickness_um", "cortical_pore_um",
                "void_factor", "trabecular_zone_um", "blastic_min_thickness_um"):
        value = p[key]
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value >= 0):
            raise BoneImgError(f"{key} must be a finite number >= 0, got {value!r}")
    if not isinstance(p["subvoxel"], (bool, np.bool_)):
        raise BoneImgError(f"subvoxel must be True or False, got {p['subvoxel']!r}")
    return p


def _reference_values(reference, img, spacing):
    """The reference as float grey values or a bool mask, checked against the image."""
    if reference is None:
        return None
    if isinstance(reference, Image):
        if reference.spacing_um is not None and not np.allclose(reference.spacing_um, spacing):
            raise BoneImgError(
                f"the reference has voxel size {reference.spacing_um} µm but the image "
                f"{tuple(spacing)} µm; resample it onto the image grid first")
        data = reference.data
    else:
        data = reference
    data = np.asarray(data)
    if data.shape != img.spatial_shape:
        raise BoneImgError(
            f"the reference has shape {data.shape} but the image has shape {img.spatial_shape}; "
            "give the aligned baseline or mirrored contralateral volume on the same grid")
    return data if data.dtype == bool else grey_values(data)[0]


def _roi(roi, shape):
    roi = np.asarray(roi)
    if roi.shape != shape or roi.dtype != bool:
        raise BoneImgError(f"roi must be a boolean array of shape {shape}, got {roi.dtype} {roi.shape}")
    return roi


def _measure(two_d, found, with_reference, cell_mm, p):
    """Lesion sizes, their fractions of the tissue volume, counts, class and perforations."""
    size, tissue_key, fraction = (("Ar_mm2", "Ref.Tt.Ar_mm2", "Ar/Tt.Ar_pct") if two_d
                                  else ("V_mm3", "Ref.Tt.V_mm3", "V/Tt.V_pct"))
    notes = {}
    values = {f"{name}.{size}": float(count) * cell_mm for name, count in found.sizes.items()}
    values[f"Lytic.{size}"] = values[f"Lytic.Tb.{size}"] + values[f"Lytic.Ct.{size}"]
    values[f"Blastic.{size}"] = values[f"Blastic.Ma.{size}"] + values[f"Blastic.Ps.{size}"]
    values[tissue_key] = float(found.tissue) * cell_mm
    for name in ("Lytic", "Blastic"):
        key = f"{name}.{fraction}"
        values[key] = 100 * values[f"{name}.{size}"] / values[tissue_key] if found.tissue else float("nan")
        if not found.tissue:
            notes[key] = "no tissue volume: no bone found" + (" in the reference" if with_reference else "")
    values["Lytic.N"] = int(ndi.label(found.lytic, structure=CUBE)[1])
    values["Blastic.N"] = int(ndi.label(found.blastic, structure=CUBE)[1])
    values["lesion_class"] = lesion_class(values[f"Lytic.{fraction}"], values[f"Blastic.{fraction}"],
                                          p["class_threshold_pct"])
    if not found.tissue:
        notes["lesion_class"] = "no bone to classify: reported as none"
    if found.notes and found.notes[-1] == ALL_BONE:
        notes.update({key: ALL_BONE for key, value in values.items()
                      if isinstance(value, float) and math.isnan(value)})
        notes["lesion_class"] = ALL_BONE
    if two_d:
        for key in ("Lytic.V_mm3", "Blastic.V_mm3"):
            values[key] = float("nan")
            notes[key] = "a 2-D slice has no volume: see the .Ar_mm2 areas"
    values["Ct.Perf.N"] = found.perforations.count
    values["Ct.Perf.Ar_mm2"] = float(np.nansum(found.perforations.areas_mm2))
    if two_d:
        values["Ct.Perf.Ar_mm2"] = float("nan")
        notes["Ct.Perf.Ar_mm2"] = "a 2-D slice shows a perforation's width, not its area"
    return values, notes


def _density(grey, bone, tissue, calibration, notes):
    """BMD over the tissue inside the periosteal envelope and TMD over bone, in mg HA/cm³."""
    keys = ("BMD_mgHA_cm3", "TMD_mgHA_cm3")
    if calibration is None:
        notes.update(dict.fromkeys(keys, "no density calibration: pass calibration=calibrate_density(...)"))
        return dict.fromkeys(keys, float("nan"))
    values = {}
    for key, region in zip(keys, (tissue, bone)):
        if region.any():
            values[key] = float(calibration.to_density(grey[region].mean(dtype=np.float64)))
        else:
            values[key] = float("nan")
            notes[key] = "no bone found"
    return values


def _trabecular_morphometry(bone, roi, spacing, notes, subvoxel):
    """:func:`bone_morphometry` of the bone inside `roi`: its measurements and its method
    description; the reasons for NaN values go to `notes`."""
    values = bone_morphometry(bone & roi, spacing, roi=roi, subvoxel=subvoxel)
    method = values.pop("method")
    notes.update(values.pop("undefined"))
    return values, method
