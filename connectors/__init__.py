"""Connectors to external systems; each depends only on ``sync_daemon.kernel``."""
