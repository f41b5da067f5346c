"""Trained network weights shipped with boneimg, one model card (``*.md``) per weight file.

This folder installs as ``boneimg._weights``; the code that loads weights is in
:mod:`boneimg.models`.
"""
