"""napari sample data: synthetic bone images from boneimg.sample_data, with their ground truth."""

from boneimg.sample_data import phantoms, sections

from ._layers import image_layer, labels_layer


def _section(make, title):
    sample = make((768, 768), 0.5, seed=1)
    return [
        image_layer(sample.image, f"{title} (synthetic)"),
        labels_layer(sample.truth["regions"], sample.image, "true regions", opacity=0.3, visible=False),
        labels_layer(sample.truth["nuclei"], sample.image, "true nuclei", visible=False),
    ]


def he_section():
    """Synthetic H&E bone section (0.5 µm/px) with true nuclei and tissue regions."""
    return _section(sections.he_section, "H&E section")


def trap_section():
    """Synthetic TRAP-stained bone section (0.5 µm/px) with osteoclasts on the bone surface."""
    return _section(sections.trap_section, "TRAP section")


def ct_lesions():
    """Synthetic micro-CT of a long bone with mixed lesions (20 µm voxels), its baseline and truth."""
    sample = phantoms.lesion_phantom("mixed", voxel_size_um=20.0, seed=2)
    return [
        image_layer(sample.truth["reference"], "micro-CT baseline (synthetic)"),
        image_layer(sample.image, "micro-CT with lesions (synthetic)"),
        labels_layer(sample.truth["lesions"], sample.image, "true lesions", opacity=0.6, visible=False),
    ]


def radiograph():
    """Synthetic radiograph of the lesion phantom, with its true lytic area."""
    sample = phantoms.radiograph(phantoms.lesion_phantom("mixed", voxel_size_um=20.0, seed=2))
    return [image_layer(sample.image, "radiograph (synthetic)"),
            labels_layer(sample.truth["lytic"].astype("uint8"), sample.image, "true lytic", visible=False)]
