"""What ``boneimg info`` reports about an image: shape, axes, dtype, spacing, modality, levels."""


def describe(image):
    """A plain dict of what ``boneimg info`` reports about an Image."""
    info = {
        "path": image.path,
        "format": image.meta.get("format"),
        "shape": list(image.shape),
        "axes": image.axes,
        "dtype": str(image.dtype),
        "spacing_um": None if image.spacing_um is None else list(image.spacing_um),
        "spacing_source": image.meta.get("spacing_source"),
        "extent_mm": None,
        "modality": image.modality,
        "levels": [list(lev.shape) for lev in image.levels] or [list(image.shape)],
        "lazy": image.is_lazy,
    }
    if image.spacing_um is not None:
        info["extent_mm"] = [n * s / 1000 for n, s in zip(image.spatial_shape, image.spacing_um)]
    if image.meta.get("calibration_notes"):
        info["notes"] = list(image.meta["calibration_notes"])
    return info


def format_description(info):
    """Human-readable lines for a :func:`describe` dict, as ``boneimg info`` prints them."""
    spacing = (
        "unknown (pass --pixel-size UM)"
        if info["spacing_um"] is None
        else " x ".join(f"{s:g}" for s in info["spacing_um"]) + f" µm ({info['spacing_source']})"
    )
    lines = [
        info["path"],
        f"  format    {info['format']}",
        f"  shape     {' x '.join(map(str, info['shape']))} ({info['axes']})",
        f"  dtype     {info['dtype']}",
        f"  spacing   {spacing}",
    ]
    if info["extent_mm"]:
        lines.append(f"  extent    {' x '.join(f'{e:.3g}' for e in info['extent_mm'])} mm")
    lines.append(f"  modality  {info['modality'] or 'unknown'}")
    lines.append(f"  levels    {len(info['levels'])}: " + ", ".join("x".join(map(str, s)) for s in info["levels"]))
    lines.extend(f"  note      {note}" for note in info.get("notes", []))
    return "\n".join(lines)
