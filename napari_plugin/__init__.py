"""napari plugin for boneimg (installed as ``boneimg_napari``): a thin layer over :mod:`boneimg`."""
