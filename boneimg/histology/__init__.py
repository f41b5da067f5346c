"""Histology: stain separation, tissue regions, nuclei, osteoclasts and histomorphometry."""
