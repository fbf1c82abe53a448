from __future__ import annotations

import numpy as np
from conftest import encode_records, learnable_records

from bonfire_worker.mlp_numpy import (
    Adam,
    NumpyMlp,
    create,
    initial_parameters,
    loss_and_gradients,
)
from bonfire_worker.spec import Examples, Layout, ModelSpec, WindowConfig


def test_backprop_matches_finite_differences() -> None:
    spec = ModelSpec.mlp(6, 5, 3)
    rng = np.random.default_rng(1)
    params = {name: array.astype(np.float64) for name, array in initial_parameters(spec, seed=2).items()}
    params = {name: array + rng.normal(0, 0.1, array.shape) for name, array in params.items()}
    inputs = rng.uniform(0, 1, (7, 6))
    labels = rng.integers(0, 3, 7)
    _, grads = loss_and_gradients(params, inputs, labels)
    step = 1e-6
    for name, array in params.items():
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            original = array[index]
            array[index] = original + step
            up, _ = loss_and_gradients(params, inputs, labels)
            array[index] = original - step
            down, _ = loss_and_gradients(params, inputs, labels)
            array[index] = original
            numeric[index] = (up - down) / (2 * step)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_training_lowers_loss_and_raises_accuracy(spec: ModelSpec, layout: Layout) -> None:
    examples = Examples.from_records(encode_records(*learnable_records(96)), layout)
    workload = create(spec)
    before = workload.evaluate(examples)
    mean_loss = workload.train(examples, WindowConfig(batch_size=16, local_steps=60, learning_rate=0.01))
    after = workload.evaluate(examples)
    assert np.isfinite(mean_loss)
    assert after.val_loss < before.val_loss * 0.5
    assert after.val_accuracy > 0.9 > before.val_accuracy
    assert after.val_examples == 96
    assert all(array.dtype == np.float32 for array in workload.export().values())


def test_export_after_load_is_bitwise_identical(spec: ModelSpec) -> None:
    params = initial_parameters(spec, seed=5)
    params["output.bias"][:] = [np.float32(1e-30), np.float32(-0.0), np.float32(3.4e38)]
    workload = NumpyMlp(spec)
    workload.load(params)
    exported = workload.export()
    assert {name: a.tobytes() for name, a in exported.items()} == {name: a.tobytes() for name, a in params.items()}


def test_each_window_starts_from_the_loaded_state_with_fresh_adam(spec: ModelSpec, layout: Layout) -> None:
    examples = Examples.from_records(encode_records(*learnable_records(40)), layout)
    config = WindowConfig(batch_size=8, local_steps=3, learning_rate=0.01)
    base = initial_parameters(spec, seed=9)
    first, second = NumpyMlp(spec), NumpyMlp(spec)
    first.load(base)
    first.train(examples, config)
    first.load(base)  # reload, train again: same result as a fresh workload
    first.train(examples, config)
    second.load(base)
    second.train(examples, config)
    for name, array in first.export().items():
        np.testing.assert_array_equal(array, second.export()[name])
    # The caller's arrays were copied, not trained in place.
    np.testing.assert_array_equal(base["hidden.weight"], initial_parameters(spec, seed=9)["hidden.weight"])


def test_adam_first_step_moves_each_weight_by_about_the_learning_rate() -> None:
    # With bias correction, step 1 is lr * g / (|g| + eps): about ±lr wherever |g| >> eps.
    params = {"w": np.zeros(3, dtype=np.float32)}
    Adam(0.1).step(params, {"w": np.array([2.0, -0.5, 0.0], dtype=np.float32)})
    np.testing.assert_allclose(params["w"], [-0.1, 0.1, 0.0], rtol=1e-4)
    assert params["w"].dtype == np.float32
