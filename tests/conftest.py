"""Suite-wide test set-up: 8 forced CPU devices for mesh tests, markers, and a shared cache directory.

XLA_FLAGS must be set before JAX is imported anywhere, so it happens at import of this conftest.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded in tests

import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a longer CPU test (still part of the README's test command)")
    config.addinivalue_line("markers", "accelerator: needs a GPU or TPU; skipped on CPU-only machines")


def pytest_collection_modifyitems(config, items):
    import jax
    if jax.default_backend() != "cpu":
        return
    skip = pytest.mark.skip(reason="needs a GPU or TPU")
    for item in items:
        if "accelerator" in item.keywords:
            item.add_marker(skip)
