"""The kernel: canonical records, identifiers, errors and the connector protocol.

It imports nothing else of the project, so connectors may depend on it and on
nothing more.
"""

from . import errors, identifiers, models, protocol

__all__ = ["errors", "identifiers", "models", "protocol"]
