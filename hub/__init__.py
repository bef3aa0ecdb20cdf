"""The district hub: receives sealed packets from stations, verifies and keeps them.

Embedded by default (a folder: SQLite index and files), or PostgreSQL and an S3
object store for several replicas; see docs/hub.md.
"""
