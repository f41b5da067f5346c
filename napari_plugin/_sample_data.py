"""napari sample data: synthetic bone images from boneimg.sample_data, with their ground truth."""

from boneimg.sample_data import phantoms, sections

from ._layers import image_layer, labels_layer


def he_section():
    """Synthetic H&E bone section (0.5 µm/px) with true nuclei and tissue regions."""
    sample = sections.he_section((768, 768), 0.5, seed=1)
    return [
        image_layer(sample.image, "H&E section (synthetic)"),
        labels_layer(sample.truth["regions"], sample.image, "true regions", opacity=0.3, visible=False),
        labels_layer(sample.truth["nuclei"], sample.image, "true nuclei", visible=False),
    ]


def ct_long_bone():
    """Synthetic micro-CT volume of a long bone (10 µm voxels) with its true bone mask."""
    sample = phantoms.ct_long_bone((96, 128, 128), 10.0, seed=2)
    return [
        image_layer(sample.image, "micro-CT (synthetic)"),
        labels_layer(sample.truth["bone"].astype("uint8"), sample.image, "true bone", opacity=0.4, visible=False),
    ]


def radiograph():
    """Synthetic radiograph projected from the micro-CT phantom."""
    sample = phantoms.radiograph(phantoms.ct_long_bone((96, 128, 128), 10.0, seed=2))
    return [image_layer(sample.image, "radiograph (synthetic)")]
