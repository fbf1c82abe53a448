"""Parameter tensors on disk (safetensors) and the check that they match the model spec."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file, save_file

from .errors import TensorMismatch
from .spec import ModelSpec


def read_tensors(path: str | Path) -> dict[str, npt.NDArray[Any]]:
    """Every tensor of a safetensors file, as NumPy arrays (dtype as stored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    return load_file(str(path))


def write_tensors(path: str | Path, params: Mapping[str, npt.NDArray[np.float32]]) -> None:
    """Writes `params` as a safetensors file (overwriting it)."""
    # safetensors copies raw bytes, so views (a transpose, a slice) must be made contiguous.
    save_file({name: np.ascontiguousarray(array) for name, array in params.items()}, str(path))


def check_tensors(params: Mapping[str, object], spec: ModelSpec, what: str) -> None:
    """Raises `TensorMismatch` unless `params` holds exactly the spec's tensors, float32, in the
    spec's shapes. The message lists every problem, naming the tensor; `what` says whose tensors
    these are ("checkpoint /x/base.safetensors", "delta", ...)."""
    expected = spec.shapes()
    problems = [
        f"missing tensor '{name}' {list(shape)}" for name, shape in expected.items() if name not in params
    ]
    for name, array in params.items():
        if name not in expected:
            problems.append(f"unexpected tensor '{name}' {_shape_of(array)}")
            continue
        if not isinstance(array, np.ndarray):
            problems.append(f"tensor '{name}' is a {type(array).__name__}, expected a numpy array")
            continue
        if array.shape != expected[name]:
            problems.append(
                f"tensor '{name}' has shape {list(array.shape)}, expected {list(expected[name])}"
            )
        if array.dtype != np.float32:
            problems.append(f"tensor '{name}' has dtype {array.dtype}, expected float32")
    if problems:
        raise TensorMismatch(f"{what}: " + "; ".join(problems))


def _shape_of(array: object) -> str:
    shape = getattr(array, "shape", None)
    return str(list(shape)) if shape is not None else f"({type(array).__name__})"
