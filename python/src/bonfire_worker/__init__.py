"""The Python side of bonfire's workload bridge: a worker process that a Rust trainer drives
over JSON lines on stdin/stdout (protocol 1, docs/PYTHON_BRIDGE.md), wrapping a workload that
trains the experiment's model in NumPy, PyTorch or anything else.

Modules:
- `spec`: the model spec, record layout, window settings and decoded examples;
- `workload`: the `Workload` interface and how `--entry module:factory` is found;
- `tensors`: safetensors files and the check against the model spec;
- `worker`: the request/reply loop (`__main__` runs it on stdin/stdout);
- `mlp_numpy`, `mlp_torch`: the bundled MLP workloads;
- `errors`, `fields`, `version`: what can go wrong, JSON field reads, version numbers.
"""

import importlib
from typing import TYPE_CHECKING

from .errors import (
    BadRequest,
    BridgeError,
    EntryError,
    FieldError,
    OutOfOrder,
    ProtocolMismatch,
    RecordError,
    TensorMismatch,
)
from .version import PROTOCOL_VERSION, __version__

if TYPE_CHECKING:
    from .spec import (
        Examples,
        Layout,
        Metrics,
        ModelSpec,
        Params,
        TensorSpec,
        WindowConfig,
    )
    from .tensors import check_tensors, read_tensors, write_tensors
    from .worker import serve
    from .workload import Workload, WorkloadFactory, load_factory

# Names whose modules import NumPy are loaded on first use, not with the package: `python -m
# bonfire_worker` imports this package first, and must cap NumPy's BLAS threads (an
# environment variable that NumPy reads once, when it loads) before anything imports NumPy.
_LAZY = {
    **dict.fromkeys(["Examples", "Layout", "Metrics", "ModelSpec", "Params", "TensorSpec", "WindowConfig"], "spec"),
    **dict.fromkeys(["check_tensors", "read_tensors", "write_tensors"], "tensors"),
    **dict.fromkeys(["serve"], "worker"),
    **dict.fromkeys(["Workload", "WorkloadFactory", "load_factory"], "workload"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "PROTOCOL_VERSION",
    "BadRequest",
    "BridgeError",
    "EntryError",
    "Examples",
    "FieldError",
    "Layout",
    "Metrics",
    "ModelSpec",
    "OutOfOrder",
    "Params",
    "ProtocolMismatch",
    "RecordError",
    "TensorMismatch",
    "TensorSpec",
    "WindowConfig",
    "Workload",
    "WorkloadFactory",
    "__version__",
    "check_tensors",
    "load_factory",
    "read_tensors",
    "serve",
    "write_tensors",
]
