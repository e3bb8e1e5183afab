"""LDL-MoE probabilistic forecasting on generated M5-format data (arXiv 2602.04678): CPU minutes.

Commands:
  python -m jaxsuite.launch --config configs/ldl_tiny.py --workdir runs/ldl_tiny
  python -m jaxsuite.launch --config configs/ldl_tiny.py:test --workdir /tmp/l     # seconds, for tests

The data are M5-format files generated from a known process (jaxsuite.forecast.m5_generate: intermittent
demand, weekly/yearly seasonality, price elasticity, events, SNAP, changepoints, volatility regimes) into
workdir/data; all 12 M5 levels are modelled. Every model (the three LDL variants and four baselines) is
trained and scored on the same rolling-origin windows over several seeds. Writes results.json, results.md,
fan_<model>.png and components.png.
"""
import ml_collections


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"cpu": "LDL-MoE (3 variants) against 4 baselines on generated M5-format data: CPU minutes",
            "test": "the smoke test: seconds, for tests and the notebook"}


def _ldl(variant_model: dict, epochs: int, **kw) -> dict:
    return dict(epochs=epochs, batch_size=256, lr=2e-3, nll_weight=0.0, model=variant_model, **kw)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.forecast.job:run"
    c.data = ml_collections.ConfigDict(dict(
        folder="",                      # "" = generate M5-format files into workdir/data
        generate=dict(items_per_dept=3, stores=["CA_1", "CA_2", "TX_1", "WI_1"], days=730, seed=0),
        levels=list(range(1, 13)), context=56, window_stride=28))
    c.eval = ml_collections.ConfigDict(dict(horizon=28, origins=2))
    c.seeds = [0, 1, 2]
    ldl_model = dict(num_experts=4, hidden=128, expert_hidden=128, n_bins=32, z_max=6.0, label_sigma=0.25)
    c.models = ml_collections.ConfigDict({
        "ldl_continuous": _ldl(ldl_model, epochs=4),
        "ldl_discrete": _ldl(ldl_model, epochs=4),
        "ldl_pattern": _ldl(dict(hidden=128, expert_hidden=128, z_max=6.0, label_sigma=0.25), epochs=4),
        "seasonal_naive": dict(kwargs={}),
        "gaussian_net": dict(kwargs={}, steps=1500),
        "quantile_net": dict(kwargs={}, steps=1500),
        "structural_bayes": dict(kwargs={}, steps=400),
    })
    if variant == "cpu":
        pass
    elif variant == "test":
        c.data.generate = dict(items_per_dept=1, stores=["CA_1", "TX_1"], days=220, seed=0)
        c.data.context = 28
        c.eval.origins = 1
        c.seeds = [0]
        small = dict(num_experts=2, hidden=16, expert_hidden=16, n_bins=16, z_max=6.0, label_sigma=0.25)
        for name in ("ldl_continuous", "ldl_discrete"):
            c.models[name] = _ldl(small, epochs=2)
        c.models.ldl_pattern = _ldl(dict(hidden=16, expert_hidden=16, z_max=6.0, label_sigma=0.25), epochs=2)
        c.models.gaussian_net.steps = 20
        c.models.quantile_net.steps = 20
        c.models.structural_bayes.steps = 20
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/ldl_tiny.py; "
                         f"choose one of: {', '.join(VARIANTS)}")
    return c
