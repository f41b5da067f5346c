"""Trained networks: the shipped weights, their loading and checking, inference and training.

Importing this package does not import torch; the modules that need it import it when used.
"""
