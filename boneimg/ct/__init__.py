"""Micro-CT and radiographs: bone segmentation, morphometry, lesions and cortical perforations."""
