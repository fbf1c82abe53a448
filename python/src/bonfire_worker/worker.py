"""The worker loop: JSON-line requests in, JSON-line replies out (protocol 1, see
docs/PYTHON_BRIDGE.md). The loop owns files, deltas, checks and timing; the workload only
computes."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np

from .errors import BadRequest, BridgeError, OutOfOrder, ProtocolMismatch
from .fields import JsonObject, describe, get_int, get_object, get_str
from .spec import Examples, Layout, Metrics, ModelSpec, Params, WindowConfig
from .tensors import check_tensors, read_tensors, write_tensors
from .version import PROTOCOL_VERSION, __version__
from .workload import Workload, check_workload, load_factory

log = logging.getLogger("bonfire_worker")

Reply = dict[str, Any]


def serve(entry: str, inp: TextIO, out: TextIO) -> None:
    """Answers requests from `inp` on `out` until `shutdown` or end-of-file.

    A failing request gets an `ok: false` reply and the loop goes on: only the Rust peer
    decides when a worker is beyond use.
    """
    worker = Worker(entry)
    while True:
        line = inp.readline()
        if not line:
            log.info("end of input: the peer has gone, exiting")
            return
        if not line.strip():
            continue
        request_id, reply, stop = worker.answer(line)
        _send(out, request_id, reply)
        if stop:
            log.info("shutdown requested, exiting")
            return


class Worker:
    """The state between requests: the workload (after `hello`) and the base (after `load`)."""

    def __init__(self, entry: str) -> None:
        self.entry = entry
        self.spec: ModelSpec | None = None
        self.workload: Workload | None = None
        self.base: Params | None = None
        self.ops: dict[str, Callable[[JsonObject], Reply]] = {
            "hello": self.hello,
            "load": self.load,
            "train": self.train,
            "evaluate": self.evaluate,
            "export": self.export,
            "ping": lambda request: {},
            "shutdown": lambda request: {},
        }

    def answer(self, line: str) -> tuple[object, Reply, bool]:
        """(request id, reply fields, whether to stop) for one request line."""
        try:
            request = json.loads(line)
        except json.JSONDecodeError as error:
            return None, _failure(BadRequest(f"request is not JSON ({error}): {line.strip()[:80]}")), False
        if not isinstance(request, dict):
            return None, _failure(BadRequest(f"request must be a JSON object, got {describe(request)}")), False
        request_id = request.get("id")
        op = request.get("op")
        try:
            handler = self.ops.get(op) if isinstance(op, str) else None
            if handler is None:
                raise BadRequest(f"unknown op {describe(op)} (expected one of {', '.join(self.ops)})")
            if op not in ("hello", "ping", "shutdown") and self.workload is None:
                raise OutOfOrder(f"hello first: '{op}' needs a workload, and none was created yet")
            return request_id, {"ok": True, **handler(request)}, op == "shutdown"
        except Exception as error:  # every failure becomes a reply
            # A missing file or a bad field is said in full by its message; anything else
            # (a bug in a workload, say) needs its traceback in the logs.
            if isinstance(error, (BridgeError, OSError)):
                log.warning("%s failed: %s", op, error)
            else:
                log.exception("%s failed", op)
            return request_id, _failure(error), False

    def hello(self, request: JsonObject) -> Reply:
        protocol = get_int(request, "protocol", "hello")
        if protocol != PROTOCOL_VERSION:
            raise ProtocolMismatch(
                f"the peer speaks protocol {protocol}, this worker "
                f"(bonfire-worker {__version__}) speaks protocol {PROTOCOL_VERSION}"
            )
        spec = ModelSpec.from_json(get_object(request, "model", "hello"), "hello.model")
        factory = load_factory(self.entry)
        workload = check_workload(factory(spec), self.entry)
        self.spec, self.workload, self.base = spec, workload, None
        log.info(
            "workload %s (%s) for %s %d-%d-%d",
            workload.name, workload.framework, spec.kind, spec.inputs, spec.hidden, spec.classes,
        )
        return {
            "protocol": PROTOCOL_VERSION,
            "worker": f"bonfire-worker {__version__}",
            "workload": workload.name,
            "framework": workload.framework,
        }

    def load(self, request: JsonObject) -> Reply:
        spec, workload = self._ready()
        path = get_str(request, "checkpoint", "load")
        params = read_tensors(path)
        check_tensors(params, spec, f"checkpoint {path}")
        # The base is our own copy: a workload may update the arrays it was given in place.
        base = {name: np.array(array, dtype=np.float32) for name, array in params.items()}
        workload.load(cast(Params, params))
        self.base = base
        return {}

    def train(self, request: JsonObject) -> Reply:
        spec, workload = self._ready()
        if self.base is None:
            raise OutOfOrder("load a checkpoint before train: the delta is measured from it")
        examples = _read_examples(request, "train")
        config = WindowConfig.from_json(request, "train")
        delta_path = get_str(request, "delta", "train")
        started = time.perf_counter()
        mean_loss = float(workload.train(examples, config))
        seconds = time.perf_counter() - started
        trained = workload.export()
        check_tensors(trained, spec, "export after train")
        delta = {name: (trained[name] - self.base[name]).astype(np.float32) for name in spec.shapes()}
        check_tensors(delta, spec, "delta")
        write_tensors(delta_path, delta)
        return {
            "mean_loss": _finite_or_null(mean_loss),
            "steps": config.local_steps,
            "examples": config.local_steps * config.batch_size,
            "seconds": seconds,
        }

    def evaluate(self, request: JsonObject) -> Reply:
        _, workload = self._ready()
        examples = _read_examples(request, "evaluate")
        metrics = workload.evaluate(examples)
        if not isinstance(metrics, Metrics):
            raise TypeError(f"{workload.name}.evaluate returned a {type(metrics).__name__}, not Metrics")
        return {
            "val_loss": _finite_or_null(float(metrics.val_loss)),
            "val_accuracy": float(metrics.val_accuracy),
            "val_examples": int(metrics.val_examples),
        }

    def export(self, request: JsonObject) -> Reply:
        spec, workload = self._ready()
        path = get_str(request, "checkpoint", "export")
        params = workload.export()
        check_tensors(params, spec, "export")
        write_tensors(path, params)
        return {}

    def _ready(self) -> tuple[ModelSpec, Workload]:
        if self.spec is None or self.workload is None:
            raise OutOfOrder("hello first")
        return self.spec, self.workload


def _read_examples(request: JsonObject, op: str) -> Examples:
    layout = Layout.from_json(get_object(request, "layout", op), f"{op}.layout")
    path = Path(get_str(request, "records", op))
    return Examples.from_records(path.read_bytes(), layout)


def _finite_or_null(value: float) -> float | None:
    # JSON has no NaN or infinity: the peer reads null as "not finite" (a diverged window's
    # delta is then refused by the peer's own finiteness check, naming the tensor).
    return value if math.isfinite(value) else None


def _failure(error: BaseException) -> Reply:
    return {"ok": False, "error": f"{type(error).__name__}: {error}"}


def _send(out: TextIO, request_id: object, reply: Reply) -> None:
    try:
        # allow_nan=False: NaN is not JSON, and the peer's parser would reject the whole line.
        line = json.dumps({"id": request_id, **reply}, allow_nan=False)
    except (TypeError, ValueError) as error:  # a NaN, or a value JSON cannot hold
        line = json.dumps({"id": request_id, **_failure(BridgeError(f"reply is not valid JSON: {error}"))})
    out.write(line + "\n")
    out.flush()
