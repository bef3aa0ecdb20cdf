"""Fingerprint reader backends: one grayscale impression (and template) per capture."""
