"""Module drivers: the contracts (base.py), the registry, and one sub-package per kind."""
