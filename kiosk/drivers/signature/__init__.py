"""Signature pad backends: signatures as pen strokes, drawn on the touchscreen or a pad."""
