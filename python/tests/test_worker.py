from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from conftest import CLASSES, FEATURES

from bonfire_worker import PROTOCOL_VERSION, __version__, serve
from bonfire_worker.mlp_numpy import NumpyMlp, initial_parameters
from bonfire_worker.spec import Examples, Metrics, ModelSpec, WindowConfig
from bonfire_worker.tensors import read_tensors, write_tensors

ENTRY = "bonfire_worker.mlp_numpy:create"
LAYOUT = {"features": FEATURES, "record_bytes": FEATURES + 1, "classes": CLASSES, "width": 4, "height": 4}


def run(requests: list[Any], entry: str = ENTRY) -> list[dict[str, Any]]:
    """Feeds requests (dicts, or raw lines as str) to serve() and returns the parsed replies."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in requests]
    out = io.StringIO()
    serve(entry, io.StringIO("".join(line + "\n" for line in lines)), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def hello(spec: ModelSpec, id: int = 1, protocol: int = PROTOCOL_VERSION) -> dict[str, Any]:
    return {"id": id, "op": "hello", "protocol": protocol, "model": spec.to_json()}


def train(records: Path, delta: Path, id: int, steps: int = 4) -> dict[str, Any]:
    return {
        "id": id, "op": "train", "records": str(records), "layout": LAYOUT,
        "batch_size": 8, "local_steps": steps, "learning_rate": 0.01, "delta": str(delta),
    }


def test_a_full_session_trains_evaluates_and_exports(
    tmp_path: Path, spec: ModelSpec, records_file: Path, checkpoint_file: Path
) -> None:
    delta, exported = tmp_path / "delta.safetensors", tmp_path / "out.safetensors"
    replies = run([
        {"id": 0, "op": "ping"},
        hello(spec),
        {"id": 2, "op": "load", "checkpoint": str(checkpoint_file)},
        train(records_file, delta, id=3),
        {"id": 4, "op": "evaluate", "records": str(records_file), "layout": LAYOUT},
        {"id": 5, "op": "export", "checkpoint": str(exported)},
        {"id": 6, "op": "shutdown"},
        {"id": 7, "op": "ping"},  # never answered: the worker has exited
    ])
    assert [reply["id"] for reply in replies] == [0, 1, 2, 3, 4, 5, 6]
    assert all(reply["ok"] for reply in replies), replies
    assert replies[1] == {
        "id": 1, "ok": True, "protocol": 1, "worker": f"bonfire-worker {__version__}",
        "workload": "numpy-mlp", "framework": f"numpy {np.__version__}",
    }
    trained = replies[3]
    assert trained["steps"] == 4 and trained["examples"] == 32
    assert trained["mean_loss"] > 0 and 0 < trained["seconds"] < 10
    assert replies[4]["val_examples"] == 96 and 0 <= replies[4]["val_accuracy"] <= 1
    # delta = exported parameters - base, with the spec's names, shapes and dtype.
    base, after, diff = (read_tensors(p) for p in (checkpoint_file, exported, delta))
    assert set(diff) == set(spec.shapes())
    for name, shape in spec.shapes().items():
        assert diff[name].shape == shape and diff[name].dtype == np.float32
        np.testing.assert_array_equal(diff[name], after[name] - base[name])
    assert np.abs(diff["hidden.weight"]).max() > 0 and np.abs(diff["output.weight"]).max() > 0


def test_requests_before_hello_are_refused(records_file: Path) -> None:
    replies = run([{"id": 1, "op": "evaluate", "records": str(records_file), "layout": LAYOUT}])
    assert replies[0]["ok"] is False and "hello first" in replies[0]["error"]


def test_protocol_mismatch_names_both_versions(spec: ModelSpec) -> None:
    (reply,) = run([hello(spec, protocol=2)])
    assert reply["ok"] is False
    assert "ProtocolMismatch" in reply["error"] and "protocol 2" in reply["error"] and "protocol 1" in reply["error"]


def test_unknown_op_and_bad_json_get_error_replies_and_the_loop_goes_on(spec: ModelSpec) -> None:
    replies = run(["{not json", "[1, 2]", {"id": 5, "op": "fly"}, {"id": 6, "op": "ping"}])
    assert replies[0]["id"] is None and replies[0]["ok"] is False and "not JSON" in replies[0]["error"]
    assert replies[1]["id"] is None and "JSON object" in replies[1]["error"]
    assert replies[2] == {"id": 5, "ok": False, "error": replies[2]["error"]}
    assert replies[2]["error"].startswith('BadRequest: unknown op "fly"')
    assert replies[3] == {"id": 6, "ok": True}


def test_missing_files_and_fields_are_named(tmp_path: Path, spec: ModelSpec, checkpoint_file: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    replies = run([
        hello(spec),
        {"id": 2, "op": "load", "checkpoint": str(missing)},
        {"id": 3, "op": "load"},
        {"id": 4, "op": "load", "checkpoint": str(checkpoint_file)},
        train(tmp_path / "no-records.bin", tmp_path / "d.safetensors", id=5),
    ])
    assert [reply["ok"] for reply in replies] == [True, False, False, True, False]
    assert replies[1]["error"].startswith("FileNotFoundError:") and str(missing) in replies[1]["error"]
    assert replies[2]["error"] == "FieldError: load: missing field 'checkpoint'"
    assert "no-records.bin" in replies[4]["error"]


def test_train_before_load_is_refused(tmp_path: Path, spec: ModelSpec, records_file: Path) -> None:
    replies = run([hello(spec), train(records_file, tmp_path / "d.safetensors", id=2)])
    assert replies[1]["ok"] is False and "load a checkpoint before train" in replies[1]["error"]


def test_a_wrong_shaped_checkpoint_is_refused(tmp_path: Path, spec: ModelSpec) -> None:
    params = initial_parameters(spec)
    params["output.weight"] = np.zeros((8, 4), dtype=np.float32)
    path = tmp_path / "bad.safetensors"
    write_tensors(path, params)
    replies = run([hello(spec), {"id": 2, "op": "load", "checkpoint": str(path)}])
    assert replies[1]["ok"] is False
    assert "TensorMismatch" in replies[1]["error"]
    assert "tensor 'output.weight' has shape [8, 4], expected [8, 3]" in replies[1]["error"]


def test_a_bad_entry_is_reported_at_hello(spec: ModelSpec) -> None:
    for entry, cause in [
        ("no_colon", "must look like 'package.module:factory'"),
        ("no_such_module_xyz:create", "module 'no_such_module_xyz' not found"),
        ("bonfire_worker.mlp_numpy:nope", "has no attribute 'nope'"),
        ("bonfire_worker.mlp_numpy:EVAL_BATCH", "not a callable factory"),
    ]:
        (reply,) = run([hello(spec)], entry=entry)
        assert reply["ok"] is False and reply["error"].startswith("EntryError") and cause in reply["error"]


class DivergingMlp(NumpyMlp):
    """Trains normally but reports a NaN loss, as a diverged window would."""

    def train(self, examples: Examples, config: WindowConfig) -> float:
        super().train(examples, config)
        return float("nan")

    def evaluate(self, examples: Examples) -> Metrics:
        return Metrics(val_loss=float("inf"), val_accuracy=0.0, val_examples=len(examples))


def test_a_non_finite_loss_is_sent_as_null(
    tmp_path: Path, spec: ModelSpec, records_file: Path, checkpoint_file: Path
) -> None:
    replies = run(
        [
            hello(spec),
            {"id": 2, "op": "load", "checkpoint": str(checkpoint_file)},
            train(records_file, tmp_path / "d.safetensors", id=3),
            {"id": 4, "op": "evaluate", "records": str(records_file), "layout": LAYOUT},
        ],
        entry="test_worker:DivergingMlp",
    )
    assert all(reply["ok"] for reply in replies), replies
    assert replies[2]["mean_loss"] is None and replies[2]["steps"] == 4
    assert replies[3]["val_loss"] is None and replies[3]["val_examples"] == 96


NOISY_WORKLOAD = """
import os
import sys
from bonfire_worker.mlp_numpy import NumpyMlp

class Noisy(NumpyMlp):
    def train(self, examples, config):
        print("print() from train, OPENBLAS_NUM_THREADS=" + os.environ["OPENBLAS_NUM_THREADS"])
        os.write(1, b"raw write to fd 1 from train\\n")
        return super().train(examples, config)

def create(spec):
    print("print() from the factory")
    return Noisy(spec)
"""


def test_workload_output_goes_to_stderr_and_stdout_stays_protocol(
    tmp_path: Path, spec: ModelSpec, records_file: Path, checkpoint_file: Path
) -> None:
    (tmp_path / "noisy_workload.py").write_text(textwrap.dedent(NOISY_WORKLOAD))
    requests = [
        hello(spec),
        {"id": 2, "op": "load", "checkpoint": str(checkpoint_file)},
        train(records_file, tmp_path / "delta.safetensors", id=3),
        {"id": 4, "op": "shutdown"},
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("OPENBLAS_NUM_THREADS", None)
    result = subprocess.run(
        [sys.executable, "-m", "bonfire_worker", "--entry", "noisy_workload:create"],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True, text=True, timeout=60, check=False, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["ok"]) for r in replies] == [(1, True), (2, True), (3, True), (4, True)], result.stderr
    for noise in ("print() from the factory", "print() from train", "raw write to fd 1 from train"):
        assert noise in result.stderr
    # NumPy loaded after the worker capped its BLAS threads (the default is one).
    assert "OPENBLAS_NUM_THREADS=1" in result.stderr


def test_the_worker_exits_cleanly_at_end_of_input() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bonfire_worker"], input='{"id": 9, "op": "ping"}\n',
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": 9, "ok": True}
    assert "end of input" in result.stderr


def test_importing_the_package_leaves_numpy_unloaded() -> None:
    # `python -m bonfire_worker` imports the package before main() can cap the BLAS threads.
    code = "import sys, bonfire_worker; assert 'numpy' not in sys.modules; bonfire_worker.Examples"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_blas_threads_flag_sets_the_openblas_thread_count() -> None:
    code = (
        "import os, sys; from bonfire_worker.__main__ import main; rc = main(['--blas-threads', '3']); "
        "sys.stderr.write('threads=' + os.environ['OPENBLAS_NUM_THREADS']); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input="", capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "threads=3" in result.stderr and "OpenBLAS threads 3" in result.stderr
