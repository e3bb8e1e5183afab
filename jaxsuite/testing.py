"""Helpers for tests and benchmarks that build reference models in transformers (PyTorch).

Not imported by the library itself. torch is imported inside the functions, so importing this module is free.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def randomize_torch_parameters(model, seed: int | None = None):
    """Gives every parameter of a transformers model a random value, in place, and returns the model.

    A freshly initialised HF model has unit norm weights and zero biases, which hides mistakes in how norms
    and biases are mapped; here norms are 1 + 0.2 N(0, 1), biases 0.1 N(0, 1) and every other weight
    0.05 N(0, 1), small enough that a few layers keep the logits in float32 comfort.
    """
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model


def build_wheel(repo, out_dir) -> Path:
    """Builds jaxsuite's wheel from the tree at `repo` into `out_dir` (no dependencies, no build isolation:
    nothing is downloaded); returns its path."""
    import subprocess
    import sys
    from pathlib import Path
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out_dir), str(repo)], check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = Path(out_dir).glob("jaxsuite-*.whl")
    return wheel


def borrowing_virtualenv(path) -> tuple[Path, Path]:
    """A fresh virtualenv at `path` that sees this environment's installed packages (a .pth line to its
    site-packages) but not jaxsuite, which is installed here in editable mode and whose finder that line does
    not load: what `pip install <wheel>` into a fresh environment gives, without downloading the dependencies.
    pip comes borrowed too and installs into this environment (its sys.prefix); a bundled pip would bring an old
    setuptools that shadows the borrowed one and fails torch's requirement. Returns (its python, its
    site-packages)."""
    import subprocess
    import sys
    import sysconfig
    from pathlib import Path
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, capture_output=True,
                   timeout=300)
    python = Path(path) / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, site
