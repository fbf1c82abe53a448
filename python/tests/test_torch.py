from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, FEATURES, encode_records, learnable_records

from bonfire_worker import serve
from bonfire_worker.mlp_numpy import NumpyMlp, initial_parameters
from bonfire_worker.spec import Examples, Layout, ModelSpec, WindowConfig

pytest.importorskip("torch")

from bonfire_worker.mlp_torch import TorchMlp


def test_torch_and_numpy_windows_give_the_same_delta(spec: ModelSpec, layout: Layout) -> None:
    examples = Examples.from_records(encode_records(*learnable_records(64, seed=3)), layout)
    config = WindowConfig(batch_size=16, local_steps=5, learning_rate=0.01)
    base = initial_parameters(spec, seed=11)
    deltas, losses = [], []
    for workload in (NumpyMlp(spec), TorchMlp(spec)):
        workload.load(base)
        losses.append(workload.train(examples, config))
        deltas.append({name: array - base[name] for name, array in workload.export().items()})
    numpy_delta, torch_delta = deltas
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for name in spec.shapes():
        assert torch_delta[name].dtype == np.float32
        scale = np.abs(numpy_delta[name]).max()
        assert scale > 0
        np.testing.assert_allclose(torch_delta[name], numpy_delta[name], rtol=0, atol=1e-4 * scale, err_msg=name)


def test_torch_and_numpy_evaluate_alike(spec: ModelSpec, layout: Layout) -> None:
    examples = Examples.from_records(encode_records(*learnable_records(1200, seed=4)), layout)
    base = initial_parameters(spec, seed=12)
    numpy_mlp, torch_mlp = NumpyMlp(spec), TorchMlp(spec)
    numpy_mlp.load(base)
    torch_mlp.load(base)
    a, b = numpy_mlp.evaluate(examples), torch_mlp.evaluate(examples)
    assert a.val_examples == b.val_examples == 1200
    assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5)
    assert a.val_accuracy == b.val_accuracy


def test_load_then_export_is_bitwise_identical(spec: ModelSpec) -> None:
    params = initial_parameters(spec, seed=13)
    params["output.bias"][:] = [np.float32(1e-30), np.float32(-0.0), np.float32(3.4e38)]
    workload = TorchMlp(spec)
    workload.load(params)
    exported = workload.export()
    for name, array in params.items():
        assert exported[name].shape == array.shape and exported[name].flags["C_CONTIGUOUS"]
        assert exported[name].tobytes() == array.tobytes(), name


def test_the_readme_workload_runs_a_window_through_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: ModelSpec, records_file: Path, checkpoint_file: Path
) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Writing your own workload (PyTorch)", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_workload.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    layout = {"features": FEATURES, "record_bytes": FEATURES + 1, "classes": CLASSES}
    requests = [
        {"id": 1, "op": "hello", "protocol": 1, "model": spec.to_json()},
        {"id": 2, "op": "load", "checkpoint": str(checkpoint_file)},
        {"id": 3, "op": "train", "records": str(records_file), "layout": layout, "batch_size": 8,
         "local_steps": 3, "learning_rate": 0.01, "delta": str(tmp_path / "delta.safetensors")},
        {"id": 4, "op": "evaluate", "records": str(records_file), "layout": layout},
    ]
    out = io.StringIO()
    serve("readme_workload:create", io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(reply["ok"] for reply in replies), replies
    assert replies[0]["workload"] == "my-torch-mlp"
    assert replies[3]["val_examples"] == 96
