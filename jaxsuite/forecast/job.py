"""The LDL forecasting job (`jaxsuite.forecast.job:run`): every model on the same M5 windows and metrics.

  data      config.data.folder (real M5 files), or M5-format files generated into workdir/data from a known
            process (jaxsuite.forecast.m5_generate) when it is empty (for a bucket workdir, into a local cache
            folder: the generator and pandas write local files); aggregated to the 12 M5 levels, of which
            config.data.levels are modelled
  splits    rolling origins (config.eval.origins of horizon 28); models train on windows ending before each
            origin's test window and forecast it from its start
  models    config.models: the LDL variants (discrete, continuous, pattern) and the baselines (seasonal naive,
            Gaussian net, quantile net, numpyro structural model), over config.seeds
  metrics   per level and overall: WRMSSE (median forecast), WSPL (the 9 M5 quantiles), scaled CRPS, MMD of the
            quantile forecast to the outcome, interval coverage at 50 / 80 / 95%; seconds per training epoch
Outputs (the job contract, jaxsuite.core.workdir): results.json, metrics.jsonl (one line per (origin, model,
seed) run, in the order they are made: its overall metrics under "<model>/<metric>"), results.md (mean +- std
over seeds and origins), fan_<model>.png, components.png, finished.json.
Resumable: every finished (origin, model, seed) is appended to runs.jsonl (with a hash of the config), so the
same command after an interruption redoes only the missing runs (and rewrites metrics.jsonl in full).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsuite.core import files
from jaxsuite.core.config_utils import config_hash
from jaxsuite.core.workdir import Workdir
from jaxsuite.forecast import metrics as fm
from jaxsuite.forecast.baselines import BASELINES   # at the top: a missing [forecast] extra fails at launch
from jaxsuite.forecast.ldl import LDLConfig, LDLForecaster, forecast_quantiles, gaussian_nll, ldl_mmd_loss
from jaxsuite.forecast.m5_data import aggregate, load_m5, m5_weights, rolling_windows
from jaxsuite.forecast.windows import forecast_inputs, select_rows, series_covariates, training_windows

log = logging.getLogger(__name__)
EVAL_QUANTILES = tuple(sorted(set(fm.M5_QUANTILES) | {round(0.05 * i, 2) for i in range(1, 20)}))
LDL_VARIANTS = {"ldl_discrete": "discrete", "ldl_continuous": "continuous", "ldl_pattern": "pattern"}


# --- training the LDL models ------------------------------------------------------------------------------------
def _ldl_optimizer(lr: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))


def _ldl_step(cfg: LDLConfig, graphdef, opt, nll_weight: float):
    """The jitted training step: (params, opt_state, batch, key) -> (params, opt_state, loss)."""
    @jax.jit
    def step(params, opt_state, batch, key):
        def loss_fn(p):
            m = nnx.merge(graphdef, p)
            out = m(batch["context"], batch["covariates"])
            loss = ldl_mmd_loss(m, out, batch["target"], key)
            if nll_weight and cfg.variant != "discrete":
                loss = loss + nll_weight * gaussian_nll(out, batch["target"])
            return loss
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return step


def _ldl_forward(graphdef, quantiles):
    """The jitted forecasting pass: (params, context, covariates) -> (quantiles [B, H, Q], raw outputs)."""
    def forward(params, context, covariates):
        m = nnx.merge(graphdef, params)
        out = m(context, covariates)
        return forecast_quantiles(m, out, quantiles), out
    return jax.jit(forward)


PREDICT_BATCH = 1024       # rows per forecasting call


def train_ldl(cfg: LDLConfig, train: dict, *, seed: int, epochs: int, batch_size: int, lr: float,
              nll_weight: float = 0.0) -> tuple[LDLForecaster, dict]:
    """Adam on the MMD loss (plus `nll_weight` x Gaussian NLL for the Gaussian variants), minibatches of the
    pooled windows, one jitted step. Returns the model and {"seconds_per_epoch", "final_loss"}."""
    model = LDLForecaster(cfg, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model)
    opt = _ldl_optimizer(lr)
    opt_state = opt.init(params)
    step = _ldl_step(cfg, graphdef, opt, nll_weight)

    n = len(train["context"])
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    steps_per_epoch = max(1, n // batch_size)
    seconds, loss = [], float("nan")
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            batch = {k: jnp.asarray(v[idx]) for k, v in train.items()}
            key, sub = jax.random.split(key)
            params, opt_state, loss = step(params, opt_state, batch, sub)
        loss = float(loss)
        seconds.append(time.perf_counter() - t0)
    # the first epoch includes compilation: report the median
    return nnx.merge(graphdef, params), {"seconds_per_epoch": float(np.median(seconds)), "final_loss": loss}


def predict_ldl(model: LDLForecaster, inputs: dict, quantiles, batch_size: int = PREDICT_BATCH
                ) -> tuple[np.ndarray, dict]:
    """Quantile forecasts [N, H, Q] in the series' units, and the last batch's raw outputs (for components)."""
    graphdef, params = nnx.split(model)
    fwd = _ldl_forward(graphdef, quantiles)
    parts, outs = [], []
    for i in range(0, len(inputs["context"]), batch_size):
        q, out = fwd(params, jnp.asarray(inputs["context"][i:i + batch_size]),
                     jnp.asarray(inputs["covariates"][i:i + batch_size]))
        parts.append(np.asarray(q))
        outs.append(jax.tree.map(np.asarray, out))
    merged = jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
    return np.concatenate(parts), merged


# --- evaluation -------------------------------------------------------------------------------------------------
def evaluate(history: np.ndarray, actual: np.ndarray, qf: np.ndarray, weights: np.ndarray, levels: np.ndarray,
             quantiles=EVAL_QUANTILES) -> dict[str, dict[str, float]]:
    """Metrics per level ("level_<l>") and overall ("all"): history [R, T], actual [R, H], qf [R, H, Q]."""
    quantiles = tuple(quantiles)
    m5_idx = [quantiles.index(q) for q in fm.M5_QUANTILES]
    median = qf[..., quantiles.index(0.5)]
    result = {}
    groups = {"all": np.ones(len(levels), bool)}
    groups.update({f"level_{lv}": levels == lv for lv in np.unique(levels)})
    for name, rows in groups.items():
        w = weights[rows] / weights[rows].sum()
        h, a, q = history[rows], actual[rows], qf[rows]
        crps = fm.crps_quantiles(a, q, quantiles)                                        # [r, H]
        scale = (1.0 + h[:, -28:].mean(axis=1))[:, None, None]                           # mean scaling
        mmd = fm.mmd2(q / scale, (a / scale[..., 0])[..., None], bandwidths=(0.1, 0.3, 1.0))
        cover = fm.coverage_from_quantiles(a, q, quantiles, levels=(0.5, 0.8, 0.95))
        with warnings.catch_warnings():   # "exclude" drops zero-scale series and warns with their weight
            warnings.simplefilter("ignore")
            result[name] = {
                "wrmsse": float(fm.wrmsse(h, a, median[rows], w, zero_scale="exclude")),
                "wspl": float(fm.wspl(h, a, q[..., m5_idx], w, fm.M5_QUANTILES, zero_scale="exclude")),
                "scaled_crps": float(crps.sum() / max(np.abs(a).sum(), 1e-9)),
                "mmd": float(np.mean(mmd)),
                **{f"coverage_{int(lv * 100)}": float(v) for lv, v in cover.items()},
            }
    return result


# --- the job ----------------------------------------------------------------------------------------------------
def load_data(config, wd: Workdir):
    d = config.data
    folder = d.folder
    if not folder:
        from jaxsuite.forecast.m5_generate import generate_m5
        folder = (wd.path("data") if not wd.remote
                  else os.path.join(files.cache_dir(), "m5_generated", config_hash(d.generate)))
        if not os.path.isdir(folder):   # written aside and renamed: an interrupted generation leaves no half data
            tmp = folder + ".partial"
            shutil.rmtree(tmp, ignore_errors=True)
            generate_m5(tmp, n_items_per_dept=int(d.generate.items_per_dept), stores=tuple(d.generate.stores),
                        n_days=int(d.generate.days), seed=int(d.generate.seed))
            os.replace(tmp, folder)
    return load_m5(folder)


def build_model_forecasts(name: str, spec, inputs, train, history, horizon, *, seed: int):
    """(quantile forecasts [R, H, Q], info, raw LDL outputs or None) of model `name` for one origin."""
    if name in LDL_VARIANTS:
        cfg = LDLConfig(context_len=inputs["context"].shape[1], horizon=horizon,
                        num_covariates=inputs["covariates"].shape[-1], variant=LDL_VARIANTS[name],
                        **{k: v for k, v in spec.model.items()})
        model, info = train_ldl(cfg, train, seed=seed, epochs=int(spec.epochs), batch_size=int(spec.batch_size),
                                lr=float(spec.lr), nll_weight=float(spec.get("nll_weight", 0.0)))
        q, out = predict_ldl(model, inputs, EVAL_QUANTILES)
        return q, info, out
    if name not in BASELINES:
        raise ValueError(f"unknown model {name!r}; known: {sorted(LDL_VARIANTS) + sorted(BASELINES)}")
    auto: dict[str, Any] = {}                      # what the data fixes; the config's kwargs come on top
    if name == "seasonal_naive":
        auto = {"horizon": horizon}
    elif name in ("gaussian_net", "quantile_net"):
        auto = {"horizon": horizon, "context_len": inputs["context"].shape[1],
                "num_covariates": inputs["covariates"].shape[-1]}
        if name == "quantile_net":
            auto["quantiles"] = EVAL_QUANTILES     # trained on the levels it is scored on
    baseline = BASELINES[name](**{**auto, **dict(spec.get("kwargs", {}))})
    t0 = time.perf_counter()
    if hasattr(baseline, "fit_series"):            # a per-series model: fits the whole history of each row
        info = dict(baseline.fit_series(history, seed=seed, steps=spec.get("steps", None)) or {})
        q = baseline.predict_quantiles_series(horizon, EVAL_QUANTILES)
    else:
        info = dict(baseline.fit(train, seed=seed, steps=spec.get("steps", None)) or {})
        q = baseline.predict_quantiles(inputs["context"], inputs["covariates"], EVAL_QUANTILES)
    info.setdefault("fit_seconds", time.perf_counter() - t0)
    return np.asarray(q, np.float32), info, None


def programs(config, mesh, rules) -> list:
    """The programs the LDL models compile, abstract, for `--compile_only` (jaxsuite.core.aot): each configured
    LDL variant's training step and its forecasting pass (at PREDICT_BATCH rows, the most one call takes). The
    job trains on one device (these models are small; seeds and origins run one after another), so the programs
    are placed on the target's first device. The baselines (the Gaussian and quantile nets, the structural
    Bayesian model) are not compiled here."""
    from jaxsuite.core.aot import Program
    from jaxsuite.forecast.m5_data import FEATURE_NAMES

    device = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])
    context, horizon = int(config.data.context), int(config.eval.horizon)
    covariates = len(FEATURE_NAMES) + 2               # + mean relative price and SNAP share (series_covariates)
    out = []
    for name, spec in config.models.items():
        if name not in LDL_VARIANTS:
            continue
        cfg = LDLConfig(context_len=context, horizon=horizon, num_covariates=covariates,
                        variant=LDL_VARIANTS[name], **{k: v for k, v in spec.model.items()})
        model = nnx.eval_shape(lambda: LDLForecaster(cfg, rngs=nnx.Rngs(0)))
        graphdef, params = nnx.split(model)
        opt = _ldl_optimizer(float(spec.lr))
        place = lambda tree: jax.tree.map(                                               # noqa: E731
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), tree)
        params, opt_state = place(params), place(jax.eval_shape(opt.init, params))
        rows = int(spec.batch_size)
        batch = place({"context": jax.ShapeDtypeStruct((rows, context), jnp.float32),
                       "target": jax.ShapeDtypeStruct((rows, horizon), jnp.float32),
                       "covariates": jax.ShapeDtypeStruct((rows, context + horizon, covariates), jnp.float32)})
        key = place(jax.eval_shape(lambda: jax.random.key(0)))
        step = _ldl_step(cfg, graphdef, opt, float(spec.get("nll_weight", 0.0)))
        out.append(Program(f"{name}/train_step", step, (params, opt_state, batch, key),
                           f"one Adam step on {rows} windows of {context} + {horizon} days"))
        fwd_in = place({"context": jax.ShapeDtypeStruct((PREDICT_BATCH, context), jnp.float32),
                        "covariates": jax.ShapeDtypeStruct((PREDICT_BATCH, context + horizon, covariates),
                                                           jnp.float32)})
        out.append(Program(f"{name}/forecast", _ldl_forward(graphdef, EVAL_QUANTILES),
                           (params, fwd_in["context"], fwd_in["covariates"]),
                           f"{len(EVAL_QUANTILES)} quantiles of {PREDICT_BATCH} series over {horizon} days"))
    return out


def run(config, workdir: str) -> dict[str, Any]:
    from jaxsuite.forecast import plots
    wd = Workdir.start(workdir)
    data = load_data(config, wd)
    hierarchy = aggregate(data)
    rows = select_rows(hierarchy, config.data.levels)
    series = hierarchy.series[rows]                                                         # [R, T]
    levels = hierarchy.level[rows]
    e = config.eval
    horizon, context = int(e.horizon), int(config.data.context)
    splits = rolling_windows(data.n_days, horizon=horizon, n_origins=int(e.origins), stride=horizon,
                             min_train=context + horizon)
    log.info("%d series at levels %s, %d days, %d origins, models %s", len(rows), list(config.data.levels),
             data.n_days, len(splits), list(config.models.keys()))
    runs: dict[str, list] = {name: [] for name in config.models.keys()}
    infos: dict[str, list] = {name: [] for name in config.models.keys()}
    fans = {}
    key = config_hash({k: (config[k].to_dict() if hasattr(config[k], "to_dict") else list(config[k]))
                      for k in ("data", "eval", "models", "seeds")})
    done_runs = _read_runs(wd, key)
    if done_runs:
        log.info("resuming: %d model runs already in %s", len(done_runs), wd.path(RUN_LOG))
    writer = wd.metrics_writer(resume_step=0)   # rewritten in full: one line per run, finished earlier or now
    run_index = 0
    for k, split in enumerate(splits):
        start = split.test[0]
        cov = series_covariates(hierarchy, data, rows, price_ref_end=start)
        inputs = forecast_inputs(series, cov, start, context=context, horizon=horizon)
        train = training_windows(series, cov, start, context=context, horizon=horizon,
                                 stride=int(config.data.window_stride))
        weights = m5_weights(hierarchy, data, start)[rows]
        history = series[:, :start]
        for name, spec in config.models.items():
            for seed in config.seeds:
                keep_fan = k == len(splits) - 1 and seed == config.seeds[0]
                done = done_runs.get((k, name, int(seed)))
                if done is not None:                  # finished by an earlier, interrupted run of this config
                    metrics, info = done["metrics"], done["info"]
                    if keep_fan:
                        fans[name] = _load_fan(wd, name)
                else:
                    t0 = time.perf_counter()
                    q, info, out = build_model_forecasts(name, spec, inputs, train, history, horizon,
                                                         seed=int(seed))
                    metrics = evaluate(history, inputs["target"], q, weights, levels)
                    info = {**info, "seconds": time.perf_counter() - t0, "origin": k, "seed": int(seed)}
                    if keep_fan:
                        fans[name] = (q, out)
                        _save_fan(wd, name, q, out)
                    _append_run(wd, key, k, name, int(seed), metrics, info)
                    log.info("origin %d seed %s %s: WRMSSE %.4f WSPL %.4f CRPS %.4f cov95 %.2f (%.1f s)", k, seed,
                             name, metrics["all"]["wrmsse"], metrics["all"]["wspl"], metrics["all"]["scaled_crps"],
                             metrics["all"]["coverage_95"], info["seconds"])
                run_index += 1
                writer.write(run_index, {"origin": k, "seed": int(seed), "model": name,
                                         **{f"{name}/{m}": v for m, v in metrics["all"].items()},
                                         f"{name}/seconds": info["seconds"]})
                runs[name].append(metrics)
                infos[name].append(info)
    writer.close()
    summary = summarise(runs)
    table = markdown_table(summary, infos)
    if wd.primary:
        plots.fan_charts(series, levels, hierarchy.keys, rows, splits[-1], fans, EVAL_QUANTILES, wd.root,
                         context=context)
        if "ldl_pattern" in fans and fans["ldl_pattern"][1] is not None:
            plots.component_plot(series, levels, [hierarchy.keys[r] for r in rows], splits[-1],
                                 fans["ldl_pattern"][1], wd.path("components.png"))
    wd.write_text("results.md", table + "\n")
    results = wd.finish(config, {
        "series": int(len(rows)), "levels": [int(v) for v in config.data.levels], "days": int(data.n_days),
        "origins": [dict(train_end=s.train_end, test=list(s.test)) for s in splits],
        "seeds": [int(s) for s in config.seeds], "summary": summary, "runs": runs, "train_info": infos,
        "markdown": table})
    log.info("forecasting done in %.0f s\n%s", wd.elapsed(), table)
    return results


# --- resumption: one JSON line per finished (origin, model, seed), the last origin's forecasts for the plots ---
RUN_LOG = "runs.jsonl"


run.programs = programs      # what `--compile_only` compiles for this job


def _read_runs(wd: Workdir, key: str) -> dict:
    """Finished runs of the config with hash `key` (lines of other configs, or a torn last line, are ignored)."""
    return {(rec["origin"], rec["model"], rec["seed"]): rec for rec in wd.read_jsonl(RUN_LOG)
            if rec.get("config") == key}


def _append_run(wd: Workdir, key: str, origin: int, name: str, seed: int, metrics: dict, info: dict) -> None:
    wd.append_jsonl(RUN_LOG, {"config": key, "origin": origin, "model": name, "seed": seed, "metrics": metrics,
                              "info": info})


def _save_fan(wd: Workdir, name: str, q: np.ndarray, out: dict | None) -> None:
    arrays = {"q": q}
    if out is not None and "components" in out:
        arrays.update({f"c_{k}": v for k, v in out["components"].items()}, scale=out["scale"])
    wd.save_npz(f"fan_{name}.npz", **arrays)


def _load_fan(wd: Workdir, name: str):
    z = wd.load_npz(f"fan_{name}.npz")
    comps = {k[2:]: v for k, v in z.items() if k.startswith("c_")}
    out = {"components": comps, "scale": z["scale"]} if comps else None
    return z["q"], out


def summarise(runs: dict[str, list]) -> dict:
    """mean and std over seeds x origins of every metric, per model and group."""
    out = {}
    for name, items in runs.items():
        out[name] = {}
        for group in items[0]:
            out[name][group] = {m: {"mean": float(np.mean([it[group][m] for it in items])),
                                    "std": float(np.std([it[group][m] for it in items]))}
                                for m in items[0][group]}
    return out


def markdown_table(summary: dict, infos: dict) -> str:
    cols = ["wrmsse", "wspl", "scaled_crps", "mmd", "coverage_50", "coverage_80", "coverage_95"]
    lines = ["| model | " + " | ".join(cols) + " | s/epoch |", "|---" * (len(cols) + 2) + "|"]
    for name, groups in summary.items():
        cells = [f"{groups['all'][c]['mean']:.4f} ± {groups['all'][c]['std']:.4f}" for c in cols]
        spe = [i.get("seconds_per_epoch") for i in infos[name] if i.get("seconds_per_epoch") is not None]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(spe):.2f} |" if spe else
                     f"| {name} | " + " | ".join(cells) + " | - |")
    levels = sorted({g for groups in summary.values() for g in groups if g != "all"}, key=lambda g: int(g[6:]))
    lines += ["", "WRMSSE / WSPL by level (mean over seeds and origins):", "",
              "| model | " + " | ".join(g.replace("level_", "L") for g in levels) + " |",
              "|---" * (len(levels) + 1) + "|"]
    for name, groups in summary.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{groups[g]['wrmsse']['mean']:.3f} / {groups[g]['wspl']['mean']:.3f}" for g in levels) + " |")
    return "\n".join(lines)
