"""LDL-MoE probabilistic forecasting on the real M5 data (arXiv 2602.04678: "aggregated sales from M5").

Commands:
  python -m jaxsuite.launch --config configs/ldl_m5.py --workdir runs/ldl_m5 \
      --config.data.folder=/data/m5-forecasting-accuracy      # sales_train_evaluation.csv, calendar.csv,
                                                              # sell_prices.csv (the Kaggle competition files)
  python -m jaxsuite.launch --config configs/ldl_m5.py:all_levels --workdir runs/ldl_m5_all \
      --config.data.folder=/data/m5-forecasting-accuracy      # all 42,840 series (needs ~40 GB of RAM)

Default: the 154 aggregated series of levels 1-9 (total, states, stores, categories, departments and their
crossings), context 112 days, three rolling origins ending at the last day of the evaluation file, three seeds.

Target: `topology` = v5e:2x2. The job trains on one device (the models are small; seeds and origins run one
after another), so one chip of it is used. `--compile_only` compiles each LDL variant's step and forecast
there: at most 1.1 GiB of the chip's 16 (benchmarks/RESULTS.md). The baselines are not compiled.
"""
import ml_collections


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"aggregated": "the paper's aggregated M5 series (the Kaggle files in data.folder)",
            "all_levels": "all 42,840 M5 series (about 40 GB of RAM)"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "aggregated").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.forecast.job:run"
    c.data = ml_collections.ConfigDict(dict(
        folder="/data/m5-forecasting-accuracy",     # the folder holding the three M5 csv files
        generate=dict(items_per_dept=3, stores=["CA_1"], days=730, seed=0),   # unused when folder is set
        levels=list(range(1, 10)), context=112, window_stride=7))
    c.eval = ml_collections.ConfigDict(dict(horizon=28, origins=3))
    c.seeds = [0, 1, 2]
    c.topology = "v5e:2x2"            # --compile_only's target; the job trains on one chip of it
    model = dict(num_experts=8, hidden=256, expert_hidden=256, n_bins=128, z_max=4.0, label_sigma=0.1)
    ldl = lambda m, epochs=30: dict(epochs=epochs, batch_size=256, lr=1e-3, nll_weight=0.0, model=m)   # noqa: E731
    c.models = ml_collections.ConfigDict({
        "ldl_continuous": ldl(model),
        "ldl_discrete": ldl(model),
        "ldl_pattern": ldl(dict(hidden=256, expert_hidden=256, z_max=4.0, label_sigma=0.1)),
        "seasonal_naive": dict(kwargs={}),
        "gaussian_net": dict(kwargs={}, steps=20000),
        "quantile_net": dict(kwargs={}, steps=20000),
        "structural_bayes": dict(kwargs={}, steps=2000),
    })
    if variant == "aggregated":
        pass
    elif variant == "all_levels":
        c.data.levels = list(range(1, 13))
        c.data.window_stride = 28
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/ldl_m5.py; "
                         f"choose one of: {', '.join(VARIANTS)}")
    return c
