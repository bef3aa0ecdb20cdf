"""Rekam kiosk: firmware for self-service e-KTP recording stations."""

__version__ = "0.1.0"
