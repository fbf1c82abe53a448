"""The interface a Python workload implements, and how the worker finds its factory."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, cast

from .errors import EntryError
from .spec import Examples, Metrics, ModelSpec, Params, WindowConfig


class Workload(Protocol):
    """A model that loads parameters, trains a window, evaluates and exports parameters.

    Parameters cross this interface as float32 NumPy arrays named and shaped as in the model
    spec, with Linear weights laid out [inputs, outputs] (`y = x @ W + b`).
    """

    name: str  # shown in logs and in the hello reply
    framework: str  # e.g. "torch 2.5.1"

    def load(self, params: Params) -> None:
        """Replaces the parameters. The arrays belong to the workload (the worker keeps a copy)."""
        ...

    def train(self, examples: Examples, config: WindowConfig) -> float:
        """Takes `config.local_steps` Adam steps from the current parameters (with fresh
        optimiser state) on the batches `examples.batch(k * batch_size, batch_size)` and returns
        the mean training loss over the steps."""
        ...

    def evaluate(self, examples: Examples) -> Metrics:
        """Mean cross-entropy and accuracy of the current parameters over every example."""
        ...

    def export(self) -> Params:
        """The current parameters (arrays the caller may keep: not views of live state)."""
        ...


WorkloadFactory = Callable[[ModelSpec], Workload]
"""Builds a workload for a model spec; named on the command line by `--entry module:factory`."""


def load_factory(entry: str) -> WorkloadFactory:
    """Imports the factory named by `entry` ("package.module:attribute", the attribute may be
    dotted, e.g. "pkg.mod:Class.create")."""
    module_name, sep, attribute = entry.partition(":")
    if not sep or not module_name or not attribute or ":" in attribute:
        raise EntryError(f"--entry '{entry}' must look like 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise EntryError(
                f"--entry '{entry}': module '{module_name}' not found "
                "(is it installed, or on PYTHONPATH?)"
            ) from error
        # The module exists but one of its own imports is missing: say which.
        raise EntryError(f"--entry '{entry}': importing '{module_name}' failed: {error}") from error
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise EntryError(f"--entry '{entry}': module '{module_name}' has no attribute '{attribute}'")
        target = getattr(target, part)
    if not callable(target):
        raise EntryError(
            f"--entry '{entry}': '{attribute}' is a {type(target).__name__}, not a callable factory"
        )
    return cast(WorkloadFactory, target)


def check_workload(workload: object, entry: str) -> Workload:
    """Raises unless the factory returned something shaped like a `Workload`."""
    problems = [
        f"no string attribute '{attr}'" for attr in ("name", "framework")
        if not isinstance(getattr(workload, attr, None), str)
    ]
    problems += [
        f"no method '{method}'" for method in ("load", "train", "evaluate", "export")
        if not callable(getattr(workload, method, None))
    ]
    if problems:
        raise TypeError(
            f"--entry '{entry}' returned a {type(workload).__name__}, which is not a Workload: "
            + ", ".join(problems)
        )
    return workload  # type: ignore[return-value]
