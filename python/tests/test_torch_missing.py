from __future__ import annotations

import sys

import pytest

from bonfire_worker import mlp_torch
from bonfire_worker.spec import ModelSpec


def test_the_torch_workload_says_how_to_install_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail, installed or not
    with pytest.raises(ImportError, match=r"PyTorch is not installed: pip install 'bonfire-worker\[torch\]'"):
        mlp_torch.create(ModelSpec.mlp(4, 3, 2))
