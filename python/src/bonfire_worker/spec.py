"""What the Rust peer tells a workload: the model spec, record layout, window settings, and
the examples decoded from a records file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import FieldError, RecordError
from .fields import JsonObject, check_int, get_float, get_int, get_list, get_str

Inputs = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]
Params = dict[str, npt.NDArray[np.float32]]
"""Parameter tensors by name: float32, shaped as in the model spec, Linear weights [inputs, outputs]."""


@dataclass(frozen=True)
class TensorSpec:
    """One named parameter tensor, as it appears in every safetensors file of the exchange."""

    name: str
    shape: tuple[int, ...]

    @classmethod
    def from_json(cls, data: object, where: str) -> TensorSpec:
        name = get_str(data, "name", where)
        dims = get_list(data, "shape", where)
        shape = tuple(check_int(dim, f"{where}.shape[{i}]", minimum=0) for i, dim in enumerate(dims))
        return cls(name, shape)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelSpec:
    """The architecture every runtime of an experiment trains; `tensors` is the canonical order."""

    kind: str
    inputs: int
    hidden: int
    classes: int
    tensors: list[TensorSpec] = field(default_factory=list)

    @classmethod
    def mlp(cls, inputs: int, hidden: int, classes: int) -> ModelSpec:
        """The multi-layer perceptron inputs → hidden (ReLU) → classes, in burn's layout."""
        return cls(
            kind="mlp",
            inputs=inputs,
            hidden=hidden,
            classes=classes,
            tensors=[
                TensorSpec("hidden.weight", (inputs, hidden)),
                TensorSpec("hidden.bias", (hidden,)),
                TensorSpec("output.weight", (hidden, classes)),
                TensorSpec("output.bias", (classes,)),
            ],
        )

    @classmethod
    def from_json(cls, data: object, where: str = "model") -> ModelSpec:
        tensors = [
            TensorSpec.from_json(item, f"{where}.tensors[{i}]")
            for i, item in enumerate(get_list(data, "tensors", where))
        ]
        names = [tensor.name for tensor in tensors]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise FieldError(f"{where}.tensors: names appear more than once: {duplicates}")
        return cls(
            kind=get_str(data, "kind", where),
            inputs=get_int(data, "inputs", where, minimum=1),
            hidden=get_int(data, "hidden", where, minimum=1),
            classes=get_int(data, "classes", where, minimum=1),
            tensors=tensors,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inputs": self.inputs,
            "hidden": self.hidden,
            "classes": self.classes,
            "tensors": [tensor.to_json() for tensor in self.tensors],
        }

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name → shape, in canonical order."""
        return {tensor.name: tensor.shape for tensor in self.tensors}

    def require_mlp(self, workload: str) -> None:
        """Raises unless this is the MLP that `ModelSpec.mlp` describes (for MLP workloads)."""
        expected = ModelSpec.mlp(self.inputs, self.hidden, self.classes)
        if self.kind != "mlp":
            raise FieldError(f"{workload} trains kind 'mlp', but the model spec is kind '{self.kind}'")
        if self.shapes() != expected.shapes():
            raise FieldError(
                f"{workload} expects the tensors {_render(expected.shapes())}, "
                f"but the model spec lists {_render(self.shapes())}"
            )


@dataclass(frozen=True)
class Layout:
    """How one fixed-size record is laid out: `features` pixel bytes, then one label byte."""

    features: int
    record_bytes: int
    classes: int

    @classmethod
    def from_json(cls, data: object, where: str = "layout") -> Layout:
        layout = cls(
            features=get_int(data, "features", where, minimum=1),
            record_bytes=get_int(data, "record_bytes", where, minimum=2),
            classes=get_int(data, "classes", where, minimum=1),
        )
        if layout.record_bytes < layout.features + 1:
            raise FieldError(
                f"{where}: record_bytes ({layout.record_bytes}) leaves no room for the label byte "
                f"after {layout.features} feature bytes"
            )
        return layout


@dataclass(frozen=True)
class WindowConfig:
    """The hyper-parameters of one training window, taken from the lease's experiment."""

    batch_size: int
    local_steps: int
    learning_rate: float

    @classmethod
    def from_json(cls, data: JsonObject, where: str = "train") -> WindowConfig:
        return cls(
            batch_size=get_int(data, "batch_size", where, minimum=1),
            local_steps=get_int(data, "local_steps", where, minimum=1),
            learning_rate=get_float(data, "learning_rate", where, minimum=0.0),
        )


@dataclass(frozen=True)
class Metrics:
    """How well the current parameters do on a set of examples."""

    val_loss: float
    val_accuracy: float
    val_examples: int


@dataclass(frozen=True)
class Examples:
    """Decoded records: `inputs` float32 [n, features] scaled to [0, 1], `labels` int64 [n]."""

    inputs: Inputs
    labels: Labels

    def __post_init__(self) -> None:
        if self.inputs.ndim != 2 or self.labels.ndim != 1 or len(self.inputs) != len(self.labels):
            raise ValueError(
                f"Examples need inputs [n, features] and labels [n], "
                f"got {list(self.inputs.shape)} and {list(self.labels.shape)}"
            )

    @classmethod
    def from_records(cls, data: bytes, layout: Layout) -> Examples:
        """Decodes `layout.record_bytes`-byte records: feature bytes, then a label byte."""
        if not data:
            raise RecordError("no records to train or evaluate on")
        if len(data) % layout.record_bytes != 0:
            raise RecordError(
                f"record bytes ({len(data)}) are not a whole number of "
                f"{layout.record_bytes}-byte records"
            )
        records = np.frombuffer(data, dtype=np.uint8).reshape(-1, layout.record_bytes)
        labels = records[:, layout.features].astype(np.int64)
        bad = np.flatnonzero(labels >= layout.classes)
        if bad.size:
            record = int(bad[0])
            raise RecordError(
                f"label {labels[record]} of record {record} is out of range "
                f"(classes: {layout.classes})"
            )
        # Same as the Rust side's `pixel as f32 / 255.0`: one correctly rounded f32 division.
        inputs = records[:, : layout.features].astype(np.float32) / np.float32(255.0)
        return cls(inputs, labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def features(self) -> int:
        return int(self.inputs.shape[1])

    def batch(self, start: int, size: int) -> Examples:
        """The `size` examples from `start` on, wrapping around: example k is (start + k) % n."""
        if len(self) == 0:
            raise RecordError("no examples to take a batch from")
        indices = (start + np.arange(size)) % len(self)
        return Examples(self.inputs[indices], self.labels[indices])


def _render(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())
