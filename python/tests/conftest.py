"""Shared fixtures: a tiny MLP spec, synthetic records and checkpoint files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bonfire_worker.mlp_numpy import initial_parameters
from bonfire_worker.spec import Layout, ModelSpec
from bonfire_worker.tensors import write_tensors

FEATURES = 16
CLASSES = 3


def encode_records(pixels: np.ndarray, labels: np.ndarray, record_bytes: int | None = None) -> bytes:
    """Records as the Rust peer writes them: pixel bytes, a label byte, zero padding."""
    n, features = pixels.shape
    record_bytes = record_bytes or features + 1
    records = np.zeros((n, record_bytes), dtype=np.uint8)
    records[:, :features] = pixels
    records[:, features] = labels
    return records.tobytes()


def learnable_records(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels where class c lights up its own third of the image, plus noise: easy to learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=n)
    pixels = rng.integers(0, 60, size=(n, FEATURES))
    band = FEATURES // CLASSES
    for i, label in enumerate(labels):
        pixels[i, label * band : (label + 1) * band] += 180
    return pixels.astype(np.uint8), labels.astype(np.uint8)


@pytest.fixture
def spec() -> ModelSpec:
    return ModelSpec.mlp(FEATURES, 8, CLASSES)


@pytest.fixture
def layout() -> Layout:
    return Layout(features=FEATURES, record_bytes=FEATURES + 1, classes=CLASSES)


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    path = tmp_path / "records.bin"
    path.write_bytes(encode_records(*learnable_records(96)))
    return path


@pytest.fixture
def checkpoint_file(tmp_path: Path, spec: ModelSpec) -> Path:
    path = tmp_path / "base.safetensors"
    write_tensors(path, initial_parameters(spec, seed=7))
    return path
