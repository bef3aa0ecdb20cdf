"""Packet format: one enrollment as a manifest plus its files (see docs/packet-format.md)."""
