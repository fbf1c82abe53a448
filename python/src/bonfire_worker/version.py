"""The package version and the bridge protocol version it speaks (docs/PYTHON_BRIDGE.md)."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
