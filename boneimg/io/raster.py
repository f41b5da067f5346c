"""PNG, JPEG and BMP files, decoded with imagecodecs (keeps 16-bit RGB PNGs 16-bit)."""

import imagecodecs

from ..errors import BoneImgError

_DECODERS = {"png": imagecodecs.png_decode, "jpeg": imagecodecs.jpeg8_decode, "bmp": imagecodecs.bmp_decode}


def read_raster(path, fmt):
    """Decode a PNG, JPEG or BMP file.

    These formats store no microscope calibration (their dpi fields are screen or print
    settings), so the returned spacing is always empty.

    Returns
    -------
    data : ndarray of shape (M, N) or (M, N, C)
    axes : str
        ``"YX"`` or ``"YXS"``.
    spacing : dict
        Always empty.
    meta : dict
    """
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
        if fmt == "jpeg" and blob.rfind(b"\xff\xd9") < blob.rfind(b"\xff\xda"):
            # libjpeg decodes a cut-off JPEG without error and pads the lost rows with grey; a
            # complete file has its end-of-image marker after its last start-of-scan marker.
            raise ValueError("no end-of-image marker after the last scan")
        data = _DECODERS[fmt](blob)
    except MemoryError:
        raise
    except Exception as exc:  # each codec raises its own error type for damaged data
        raise BoneImgError(f"cannot decode {fmt.upper()} data, the file is truncated or corrupt ({exc})", path=path) from None
    if fmt == "jpeg" and data.ndim == 3 and data.shape[-1] == 4:
        # JPEG has no alpha: 4 components are CMYK/YCCK, which would pass for RGBA with wrong colours.
        raise BoneImgError("CMYK JPEG is not supported; save the image as RGB", path=path)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3 and data.shape[-1] == 2:  # grey + alpha: the alpha carries no signal
        data = data[..., 0]
    axes = "YX" if data.ndim == 2 else "YXS"
    return data, axes, {}, {"format": fmt}
