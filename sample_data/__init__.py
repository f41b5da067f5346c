"""Example data for boneimg: synthetic images with exact ground truth, made on demand.

Installed as :mod:`boneimg.sample_data`. Only data the project may redistribute lives here.
"""
