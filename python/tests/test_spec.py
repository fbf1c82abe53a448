from __future__ import annotations

import numpy as np
import pytest
from conftest import encode_records

from bonfire_worker.errors import FieldError, RecordError
from bonfire_worker.spec import Examples, Layout, ModelSpec, WindowConfig


def test_records_decode_to_scaled_pixels_and_labels() -> None:
    pixels = np.array([[0, 255, 51], [102, 1, 254]], dtype=np.uint8)
    data = encode_records(pixels, np.array([2, 0]), record_bytes=5)  # one padding byte each
    examples = Examples.from_records(data, Layout(features=3, record_bytes=5, classes=3))
    assert examples.inputs.dtype == np.float32 and examples.labels.dtype == np.int64
    assert examples.inputs.shape == (2, 3) and len(examples) == 2 and examples.features == 3
    np.testing.assert_array_equal(examples.inputs, pixels.astype(np.float32) / np.float32(255))
    assert examples.inputs[0, 1] == 1.0 and examples.inputs[0, 2] == np.float32(0.2)
    assert examples.labels.tolist() == [2, 0]


def test_empty_records_are_an_error() -> None:
    with pytest.raises(RecordError, match="no records"):
        Examples.from_records(b"", Layout(features=3, record_bytes=4, classes=3))


def test_ragged_records_name_both_sizes() -> None:
    with pytest.raises(RecordError, match=r"\(9\).*4-byte records"):
        Examples.from_records(bytes(9), Layout(features=3, record_bytes=4, classes=3))


def test_out_of_range_label_names_record_and_label() -> None:
    data = encode_records(np.zeros((3, 2), dtype=np.uint8), np.array([0, 1, 7]))
    with pytest.raises(RecordError, match=r"label 7 of record 2 .*classes: 3"):
        Examples.from_records(data, Layout(features=2, record_bytes=3, classes=3))


def test_batches_wrap_around_modulo_the_example_count() -> None:
    data = encode_records(np.arange(5, dtype=np.uint8)[:, None], np.arange(5) % 2)
    examples = Examples.from_records(data, Layout(features=1, record_bytes=2, classes=2))
    batch = examples.batch(3, 4)
    assert [round(float(x) * 255) for x in batch.inputs[:, 0]] == [3, 4, 0, 1]
    assert batch.labels.tolist() == [1, 0, 0, 1]
    # Later steps start far past the end and still land on (start + k) % n.
    assert examples.batch(4 * 8, 3).labels.tolist() == [examples.labels[i % 5] for i in (32, 33, 34)]
    assert len(examples.batch(0, 12)) == 12


def test_model_spec_parses_the_hello_model() -> None:
    spec = ModelSpec.mlp(784, 128, 10)
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert spec.shapes()["hidden.weight"] == (784, 128)
    spec.require_mlp("test")


def test_model_spec_errors_name_the_field() -> None:
    data = ModelSpec.mlp(4, 3, 2).to_json()
    del data["hidden"]
    with pytest.raises(FieldError, match="model: missing field 'hidden'"):
        ModelSpec.from_json(data)
    data = ModelSpec.mlp(4, 3, 2).to_json() | {"inputs": "784"}
    with pytest.raises(FieldError, match=r"model.inputs: expected an integer, got \"784\" \(string\)"):
        ModelSpec.from_json(data)
    data = ModelSpec.mlp(4, 3, 2).to_json()
    data["tensors"][1]["shape"] = [3, True]
    with pytest.raises(FieldError, match=r"model.tensors\[1\].shape\[1\]: expected an integer"):
        ModelSpec.from_json(data)


def test_mlp_workloads_reject_a_spec_with_other_tensors() -> None:
    spec = ModelSpec.mlp(4, 3, 2)
    odd = ModelSpec(spec.kind, spec.inputs, spec.hidden, spec.classes, spec.tensors[:3])
    with pytest.raises(FieldError, match="expects the tensors"):
        odd.require_mlp("numpy-mlp")
    with pytest.raises(FieldError, match="kind 'mlp'"):
        ModelSpec("cnn", 4, 3, 2, spec.tensors).require_mlp("numpy-mlp")


def test_layout_and_window_config_validate_their_fields() -> None:
    with pytest.raises(FieldError, match="no room for the label"):
        Layout.from_json({"features": 784, "record_bytes": 784, "classes": 10})
    assert Layout.from_json({"features": 784, "record_bytes": 785, "classes": 10, "width": 28}).features == 784
    config = WindowConfig.from_json({"batch_size": 32, "local_steps": 4, "learning_rate": 1})
    assert config == WindowConfig(32, 4, 1.0)
    with pytest.raises(FieldError, match="train.batch_size: must be at least 1, got 0"):
        WindowConfig.from_json({"batch_size": 0, "local_steps": 4, "learning_rate": 0.01})
    with pytest.raises(FieldError, match="train: missing field 'learning_rate'"):
        WindowConfig.from_json({"batch_size": 1, "local_steps": 4})
