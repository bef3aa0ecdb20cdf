"""Store-and-forward to the district hub: resumable uploads and signed heartbeats.

``client`` speaks the protocol (docs/sync-protocol.md) over HTTPS with the hub's
certificate pinned; ``backoff`` paces the retries; ``runner`` sends the store's
waiting packets and runs the sync service; ``commands`` is `kiosk sync`.
"""
