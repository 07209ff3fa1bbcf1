"""Frozen image-encoder features of trajectory frames (``rayrg encode``), for ``observation: features``."""
