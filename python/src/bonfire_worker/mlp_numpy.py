"""The reference workload: the bonfire MLP in plain NumPy, trained like the burn workload.

Forward: h = relu(x @ W1 + b1), logits = h @ W2 + b2, loss = mean softmax cross-entropy.
Gradients are written out by hand; the optimiser is burn's default Adam. Every array stays
float32, as in burn, so a NumPy window and a burn window from the same base agree closely.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from .spec import Examples, Labels, Metrics, ModelSpec, Params, WindowConfig

Array = npt.NDArray[np.floating]

EVAL_BATCH = 500


def create(spec: ModelSpec) -> NumpyMlp:
    """The factory named by the default `--entry bonfire_worker.mlp_numpy:create`."""
    return NumpyMlp(spec)


class NumpyMlp:
    """The MLP workload on NumPy."""

    name = "numpy-mlp"

    def __init__(self, spec: ModelSpec) -> None:
        spec.require_mlp(self.name)
        self.spec = spec
        self.framework = f"numpy {np.__version__}"
        self.params: Params = initial_parameters(spec)

    def load(self, params: Params) -> None:
        # Copies: training updates in place, and the caller's arrays must not change under it.
        self.params = {name: np.array(params[name], dtype=np.float32) for name in self.spec.shapes()}

    def export(self) -> Params:
        return {name: array.copy() for name, array in self.params.items()}

    def train(self, examples: Examples, config: WindowConfig) -> float:
        optimizer = Adam(config.learning_rate)
        total = 0.0
        for step in range(config.local_steps):
            batch = examples.batch(step * config.batch_size, config.batch_size)
            loss, grads = loss_and_gradients(self.params, batch.inputs, batch.labels)
            optimizer.step(self.params, grads)
            total += loss
        return total / config.local_steps

    def evaluate(self, examples: Examples) -> Metrics:
        n = len(examples)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, EVAL_BATCH):
            inputs = examples.inputs[start : start + EVAL_BATCH]
            labels = examples.labels[start : start + EVAL_BATCH]
            log_probs = log_softmax(forward(self.params, inputs)[1])
            # Per-example losses are f32; their sum is f64 so 10 000 of them do not lose digits.
            loss_sum -= float(log_probs[np.arange(len(labels)), labels].sum(dtype=np.float64))
            correct += int((log_probs.argmax(axis=1) == labels).sum())
        return Metrics(val_loss=loss_sum / n, val_accuracy=correct / n, val_examples=n)


class Adam:
    """burn's default Adam (β₁ 0.9, β₂ 0.999, ε 1e-5, no weight decay), in float32.

    A fresh instance per window: each window starts from the loaded base with new moments.
    """

    def __init__(self, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-5):
        self.learning_rate = np.float32(learning_rate)
        self.beta1 = np.float32(beta1)
        self.beta2 = np.float32(beta2)
        self.epsilon = np.float32(epsilon)
        self.time = 0
        self.moment1: dict[str, Array] = {}
        self.moment2: dict[str, Array] = {}

    def step(self, params: Params, grads: Mapping[str, Array]) -> None:
        """Updates `params` in place from `grads`."""
        self.time += 1
        one = np.float32(1.0)
        correction1 = one - self.beta1**self.time
        correction2 = one - self.beta2**self.time
        for name, grad in grads.items():
            m = self.moment1.get(name, np.zeros_like(grad))
            v = self.moment2.get(name, np.zeros_like(grad))
            m = self.beta1 * m + (one - self.beta1) * grad
            v = self.beta2 * v + (one - self.beta2) * (grad * grad)
            self.moment1[name], self.moment2[name] = m, v
            update = (m / correction1) / (np.sqrt(v / correction2) + self.epsilon)
            params[name] -= self.learning_rate * update


def initial_parameters(spec: ModelSpec, seed: int = 0) -> Params:
    """Kaiming-uniform weights (bound √(2 / fan_in)) and zero biases, so a workload can evaluate
    or train before its first `load`. Peers always `load` the head first; this is a fallback."""
    rng = np.random.default_rng(seed)
    params: Params = {}
    for name, shape in spec.shapes().items():
        if name.endswith(".bias"):
            params[name] = np.zeros(shape, dtype=np.float32)
        else:
            bound = np.sqrt(2.0 / shape[0])
            params[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return params


def forward(params: Mapping[str, Array], inputs: Array) -> tuple[Array, Array]:
    """Pre-activations of the hidden layer and the logits (in the dtype of the arguments)."""
    pre = inputs @ params["hidden.weight"] + params["hidden.bias"]
    logits = np.maximum(pre, 0) @ params["output.weight"] + params["output.bias"]
    return pre, logits


def log_softmax(logits: Array) -> Array:
    """Row-wise log-probabilities, shifted by the row maximum so exp() cannot overflow."""
    shifted: Array = logits - logits.max(axis=1, keepdims=True)
    log_probs: Array = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return log_probs


def loss_and_gradients(
    params: Mapping[str, Array], inputs: Array, labels: Labels
) -> tuple[float, dict[str, Array]]:
    """Mean cross-entropy of a batch and its gradient for every parameter (manual backprop).

    Works in the dtype of the arguments: float32 for training, float64 for gradient checks.
    """
    n = len(labels)
    rows = np.arange(n)
    pre, logits = forward(params, inputs)
    hidden = np.maximum(pre, 0)
    log_probs = log_softmax(logits)
    loss = -log_probs[rows, labels].mean()
    # d(mean CE)/d(logits) = (softmax - one_hot) / n
    grad_logits = np.exp(log_probs)
    grad_logits[rows, labels] -= 1
    grad_logits /= n
    # ReLU passes gradient only where its input was positive (as burn's relu backward).
    grad_pre = (grad_logits @ params["output.weight"].T) * (pre > 0)
    grads = {
        "hidden.weight": inputs.T @ grad_pre,
        "hidden.bias": grad_pre.sum(axis=0),
        "output.weight": hidden.T @ grad_logits,
        "output.bias": grad_logits.sum(axis=0),
    }
    return float(loss), grads

