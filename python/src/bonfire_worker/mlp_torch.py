"""The bonfire MLP on PyTorch (CPU, float32): `--entry bonfire_worker.mlp_torch:create`.

PyTorch is optional (`pip install 'bonfire-worker[torch]'`), so it is imported only when a
workload is created and this module imports cleanly without it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from .mlp_numpy import initial_parameters
from .spec import Examples, Metrics, ModelSpec, Params, WindowConfig

EVAL_BATCH = 500

# nn.Linear stores its weight [outputs, inputs]; the wire layout is [inputs, outputs].
LINEARS = {"hidden": 0, "output": 2}  # spec prefix → index in the nn.Sequential


def create(spec: ModelSpec) -> TorchMlp:
    """The factory named by `--entry bonfire_worker.mlp_torch:create`."""
    return TorchMlp(spec)


def import_torch() -> ModuleType:
    try:
        return importlib.import_module("torch")
    except ModuleNotFoundError as error:
        raise ImportError("PyTorch is not installed: pip install 'bonfire-worker[torch]'") from error


class TorchMlp:
    """The MLP workload on PyTorch."""

    name = "torch-mlp"

    def __init__(self, spec: ModelSpec) -> None:
        spec.require_mlp(self.name)
        torch = import_torch()
        self.spec = spec
        self.torch: Any = torch
        self.framework = f"torch {torch.__version__}"
        nn = torch.nn
        self.model: Any = nn.Sequential(
            nn.Linear(spec.inputs, spec.hidden),
            nn.ReLU(),
            nn.Linear(spec.hidden, spec.classes),
        ).to(device="cpu", dtype=torch.float32)
        # The same fallback start as the NumPy workload, so both agree before any `load`.
        self.load(initial_parameters(spec))

    def load(self, params: Params) -> None:
        torch = self.torch
        with torch.no_grad():
            for prefix, index in LINEARS.items():
                linear = self.model[index]
                weight = np.asarray(params[f"{prefix}.weight"], dtype=np.float32)
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))
                linear.bias.copy_(torch.from_numpy(np.asarray(params[f"{prefix}.bias"], dtype=np.float32)))

    def export(self) -> Params:
        params: Params = {}
        for prefix, index in LINEARS.items():
            linear = self.model[index]
            params[f"{prefix}.weight"] = np.ascontiguousarray(linear.weight.detach().cpu().numpy().T)
            params[f"{prefix}.bias"] = linear.bias.detach().cpu().numpy().copy()
        return params

    def train(self, examples: Examples, config: WindowConfig) -> float:
        torch = self.torch
        # Fresh moments each window, with burn's defaults (its ε is 1e-5, PyTorch's 1e-8).
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-5
        )
        self.model.train()
        total = 0.0
        for step in range(config.local_steps):
            batch = examples.batch(step * config.batch_size, config.batch_size)
            logits = self.model(torch.from_numpy(batch.inputs))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(batch.labels))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.item())
        return total / config.local_steps

    def evaluate(self, examples: Examples) -> Metrics:
        torch = self.torch
        n = len(examples)
        loss_sum, correct = 0.0, 0
        self.model.eval()
        with torch.no_grad():
            for start in range(0, n, EVAL_BATCH):
                inputs = torch.from_numpy(examples.inputs[start : start + EVAL_BATCH])
                labels = torch.from_numpy(examples.labels[start : start + EVAL_BATCH])
                logits = self.model(inputs)
                losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
                loss_sum += float(losses.double().sum().item())
                correct += int((logits.argmax(dim=1) == labels).sum().item())
        return Metrics(val_loss=loss_sum / n, val_accuracy=correct / n, val_examples=n)
