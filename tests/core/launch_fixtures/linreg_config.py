"""A miniature sharded training job for the multi-host tests (tests/core/test_multihost.py).

    PYTHONPATH=tests/core/launch_fixtures XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python -m jaxsuite.launch --config tests/core/launch_fixtures/linreg_config.py --workdir /tmp/linreg
"""
import ml_collections


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.job = "launch_fixture_jobs:sharded_linreg"
    c.seed = 0
    c.num_devices = 4      # the mesh spans this many devices, across all processes
    c.dim = 8
    c.out = 4
    c.batch = 16
    c.lr = 0.05
    c.steps = 6
    c.checkpoint_at = 3
    if arg == "short":
        c.steps = 4
        c.checkpoint_at = 2
    return c
