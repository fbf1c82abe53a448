"""Errors the worker reports to the Rust peer as a one-line cause, without a traceback.

Every other exception (a bug in a workload, say) is reported too, but its traceback also goes
to stderr, where the Rust peer forwards it to its logs.
"""

from __future__ import annotations


class BridgeError(Exception):
    """A request the worker cannot serve, for a reason its message states in full."""


class BadRequest(BridgeError, ValueError):
    """A request line that is not a JSON object, or names no known op."""


class FieldError(BridgeError, ValueError):
    """A JSON object lacks a field, or a field holds a value of the wrong type or range."""


class RecordError(BridgeError, ValueError):
    """A records file does not decode under its layout."""


class TensorMismatch(BridgeError, ValueError):
    """A set of tensors does not have exactly the model spec's names, dtype and shapes."""


class ProtocolMismatch(BridgeError):
    """The Rust peer and the worker speak different protocol versions."""


class OutOfOrder(BridgeError):
    """A request arrived before the one it depends on (`hello` before all, `load` before `train`)."""


class EntryError(BridgeError, ImportError):
    """The `--entry module:factory` does not name a callable that can be imported."""
