"""Exceptions and warnings raised by boneimg.

User-facing messages are built here so that every error names the file (when there is one) and
the reason in the same form.
"""

import os


class BoneImgError(ValueError):
    """Bad input: unreadable, truncated, unsupported or uncalibrated data.

    Parameters
    ----------
    message : str
        What is wrong, in words a user can act on.
    path : str or os.PathLike, optional
        The file or folder the problem is about; it is put at the start of the message.
    """

    def __init__(self, message, *, path=None):
        self.path = None if path is None else os.fspath(path)
        self.reason = message
        super().__init__(message if path is None else f"{self.path}: {message}")


class CalibrationWarning(UserWarning):
    """The pixel or voxel size of an image is unknown or doubtful."""
