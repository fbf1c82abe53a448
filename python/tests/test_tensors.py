from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bonfire_worker.errors import TensorMismatch
from bonfire_worker.mlp_numpy import initial_parameters
from bonfire_worker.spec import ModelSpec
from bonfire_worker.tensors import check_tensors, read_tensors, write_tensors


def test_round_trip_keeps_names_shapes_and_bits(tmp_path: Path, spec: ModelSpec) -> None:
    params = initial_parameters(spec, seed=3)
    params["hidden.weight"] = params["hidden.weight"].T.copy().T  # a non-contiguous view
    write_tensors(tmp_path / "p.safetensors", params)
    back = read_tensors(tmp_path / "p.safetensors")
    assert set(back) == set(params)
    for name, array in params.items():
        assert back[name].dtype == np.float32
        assert back[name].tobytes() == np.ascontiguousarray(array).tobytes()
    check_tensors(back, spec, "round trip")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        read_tensors(tmp_path / "nope.safetensors")


def test_wrong_shape_names_the_tensor_and_both_shapes(spec: ModelSpec) -> None:
    params = initial_parameters(spec)
    params["hidden.weight"] = params["hidden.weight"].T
    with pytest.raises(TensorMismatch, match=r"delta: tensor 'hidden.weight' has shape \[8, 16\], expected \[16, 8\]"):
        check_tensors(params, spec, "delta")


def test_missing_and_extra_tensors_are_named(spec: ModelSpec) -> None:
    params = initial_parameters(spec)
    params["output.b"] = params.pop("output.bias")
    with pytest.raises(TensorMismatch) as caught:
        check_tensors(params, spec, "checkpoint x")
    message = str(caught.value)
    assert "missing tensor 'output.bias' [3]" in message
    assert "unexpected tensor 'output.b' [3]" in message


def test_wrong_dtype_is_named(spec: ModelSpec) -> None:
    params = initial_parameters(spec)
    params["output.bias"] = params["output.bias"].astype(np.float64)
    with pytest.raises(TensorMismatch, match="tensor 'output.bias' has dtype float64, expected float32"):
        check_tensors(params, spec, "export")
