"""Module supervision: assembling the station's modules, watching them, noticing swaps."""
