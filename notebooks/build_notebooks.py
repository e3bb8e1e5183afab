"""Writes notebooks/*.ipynb from the cell lists below (run: python notebooks/build_notebooks.py
[--repository-url https://github.com/<owner>/<name>] once the repository is public, for the Colab badges).

Keeping the cells here makes notebook changes reviewable as plain Python diffs; the .ipynb files are the
artefacts users open in Colab or Jupyter, and tests/test_notebooks.py executes them top to bottom.
"""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

QUICKSTART = [
    new_markdown_cell("""# jaxsuite quickstart

Load a Hugging Face decoder (Qwen3 / Qwen2 / Llama) into Flax NNX, generate, take a few sharded training steps
and export it back to a folder transformers loads. Runs on CPU, GPU or TPU.

Set `MODEL` to a hub id such as `Qwen/Qwen3-0.6B` or to
a local checkpoint folder. The tests run this notebook offline with a tiny random checkpoint instead
(`JAXSUITE_NOTEBOOK_MODEL`)."""),
    new_code_cell("""import os, tempfile
import jax, jax.numpy as jnp, numpy as np
import jaxsuite
from jaxsuite.core.tokenizer import load_tokenizer

MODEL = os.environ.get("JAXSUITE_NOTEBOOK_MODEL", "Qwen/Qwen3-0.6B")
print("jax", jax.__version__, "devices:", jax.devices())"""),
    new_markdown_cell("## 1. Load a checkpoint\n`load_pretrained` reads config.json + safetensors (sharded or not, "
                      "float32 or bfloat16) through one explicit name/shape table per architecture."),
    new_code_cell("""model = jaxsuite.load_pretrained(MODEL, dtype=jnp.float32)
cfg = model.config
print(cfg.model_type, f"{jaxsuite.count_params(cfg) / 1e6:.2f}M parameters,", cfg.num_hidden_layers, "layers")
has_tokenizer = os.path.isdir(MODEL) and any(f.startswith("tokenizer") for f in os.listdir(MODEL))
tok = load_tokenizer(MODEL) if (has_tokenizer or not os.path.isdir(MODEL)) else load_tokenizer("byte")
print("tokenizer:", tok)"""),
    new_markdown_cell("## 2. Generate\nOne jit-compiled loop over the KV cache; prompts of different lengths "
                      "are padded for you."),
    new_code_cell("""prompts = ["def add(a, b):", "import os\\n"]
out = jaxsuite.generate(model, [tok.encode(p) for p in prompts], max_new_tokens=16, temperature=0.0)
for p, seq in zip(prompts, out.sequences()):
    print(repr(p), "->", repr(tok.decode(seq)))"""),
    new_markdown_cell("## 3. A few training steps on a device mesh\nThe mesh axes are `data`, `fsdp`, `tensor`; "
                      "`-1` takes the remaining devices. The batches come from the embedded corpus (the Python "
                      "standard library's source)."),
    new_code_cell("""import ml_collections
from jaxsuite.core import train as tr
from jaxsuite.core.data import make_lm_dataset
from jaxsuite.core.sharding import DEFAULT_RULES, make_mesh

mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
train_cfg = ml_collections.ConfigDict(dict(lr=1e-3, warmup_steps=2, min_lr_ratio=0.1, weight_decay=0.0,
                                           b1=0.9, b2=0.95, grad_clip=1.0))
optimizer = tr.make_optimizer(train_cfg, total_steps=5)
graphdef, state, shardings = tr.create_train_state(model, optimizer, mesh, DEFAULT_RULES)
step_fn = tr.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings)
data = iter(make_lm_dataset("stdlib", tok, seq_len=64, batch_size=jax.device_count() * 2, seed=0))
for i in range(5):
    state, metrics = step_fn(state, next(data))
    print(f"step {i + 1}: loss {float(metrics['loss']):.3f}")"""),
    new_markdown_cell("## 4. Export to Hugging Face format"),
    new_code_cell("""from flax import nnx
trained = nnx.merge(graphdef, state.params, state.model_state)
export_dir = os.path.join(tempfile.mkdtemp(), "hf")
jaxsuite.save_pretrained(trained, export_dir)
print(sorted(os.listdir(export_dir)))
reloaded = jaxsuite.load_pretrained(export_dir)
ids = jnp.asarray([tok.encode("print('hello')")])
print("max |logit diff| after the round trip:", float(jnp.max(jnp.abs(trained(ids) - reloaded(ids)))))"""),
    new_code_cell("""try:   # transformers (the [test] extra) loads the export directly
    import torch, transformers
    hf = transformers.AutoModelForCausalLM.from_pretrained(export_dir).eval()
    with torch.no_grad():
        ref = hf(torch.from_numpy(np.asarray(ids))).logits.numpy()
    print("max |jaxsuite - transformers|:", float(np.max(np.abs(np.asarray(trained(ids)) - ref))))
except ImportError:
    print("transformers not installed; skipped the cross-check")"""),
]

HYPENET_HALO = [
    new_markdown_cell("""# HypeNet and HALO: converting a Qwen3 into an RNN-attention hybrid

HALO (arXiv 2601.22156) distils a softmax-attention Qwen3 into **HypeNet**: most layers become Lightning
attention (a linear-attention RNN with a constant-size state), a few stay softmax attention without position
encoding, with HyPE's logit scaling for length generalisation. This notebook walks the pipeline one step at a
time on the tiny CPU config (`configs/halo_tiny.py`): teacher, stage 0 (weight transfer), stage 1 (per-layer
alignment), layer selection, stage 2 (logit distillation), stage 3 (long-context fine-tuning), evaluation.

Each step is the function `python -m jaxsuite.launch` calls, so a stopped notebook resumes where it was.
`HALO_VARIANT=test` (what the tests use) makes every step a few seconds; the default `cpu` takes a few minutes."""),
    new_code_cell("""import json, os
import jax, jax.numpy as jnp, numpy as np
from IPython.display import Image, Markdown, display
import jaxsuite
from jaxsuite.core.build import build_tokenizer
from jaxsuite.core.config_utils import load_config
from jaxsuite.halo import pipeline
from jaxsuite.halo.transfer import hypenet_config_from_teacher, stage0_transfer

VARIANT = os.environ.get("HALO_VARIANT", "cpu")
WORKDIR = os.environ.get("HALO_WORKDIR", os.path.abspath(f"runs/halo_notebook_{VARIANT}"))
config = load_config("configs/halo_tiny.py", VARIANT)
print("devices:", jax.devices()[:2], "...", "| workdir:", WORKDIR)"""),
    new_markdown_cell("## 1. The teacher\nA small Qwen3-architecture model pre-trained on the embedded corpus (the "
                      "Python standard library's source) mixed with synthetic *passkey* documents, so it learns to "
                      "retrieve a number from earlier in its context. Cached: a second run reuses it."),
    new_code_cell("""teacher_dir = pipeline.prepare_teacher(config, WORKDIR)
teacher = jaxsuite.load_pretrained(teacher_dir)
tok = build_tokenizer(config)
print(teacher.config.model_type, teacher.config.num_hidden_layers, "layers,",
      f"{jaxsuite.count_params(teacher.config) / 1e6:.2f}M parameters")"""),
    new_markdown_cell("## 2. Stage 0: weight transfer\nEvery teacher projection is copied; Lightning layers get the "
                      "teacher's K/V heads repeat-interleaved to all query heads (GQA -> MHA) plus a new output gate "
                      "and output norm; kept attention layers lose RoPE and gain a sigmoid output gate."),
    new_code_cell("""cfg0 = hypenet_config_from_teacher(teacher.config, attention_layers=[1])
student0 = stage0_transfer(teacher, cfg0)
print("mixer types:", cfg0.mixer_types)
ids = jnp.asarray([tok.encode("def main():\\n    return 0\\n")])
print("teacher vs untrained student, max |logit diff|:", float(jnp.max(jnp.abs(teacher(ids) - student0(ids)))))"""),
    new_markdown_cell("## 3. Stage 1: per-layer hidden-state alignment\nEvery layer gets a Lightning student fed "
                      "the teacher's own layer input; only the students train, on the MSE to the teacher's "
                      "attention output."),
    new_code_cell("""students_dir = pipeline.run_stage(config, 1, WORKDIR, teacher_dir)
print(json.load(open(os.path.join(WORKDIR, "stage1", "results.json")))["eval_loss"])
display(Image(os.path.join(WORKDIR, "stage1", "loss.png")))"""),
    new_markdown_cell("## 4. Layer selection\nEach layer alone is replaced by its student; a layer whose "
                      "replacement costs much recall (passkey retrieval) but little language modelling stays "
                      "softmax attention (HALO's importance score, capped at 50)."),
    new_code_cell("""layers = pipeline.layer_selection(config, WORKDIR, teacher_dir, students_dir, tok)
print("kept as attention:", layers)
display(Image(os.path.join(WORKDIR, "layer_importance.png")))"""),
    new_markdown_cell("## 5. Stages 2 and 3: logit distillation, then long-context fine-tuning"),
    new_code_cell("""hybrid_dir = pipeline.run_stage(config, 2, WORKDIR, teacher_dir, students_dir, layers)
final_dir = pipeline.run_stage(config, 3, WORKDIR, teacher_dir, hybrid_dir, layers)
hypenet = jaxsuite.load_pretrained(final_dir)
print(type(hypenet).__name__, hypenet.config.mixer_types)"""),
    new_markdown_cell("## 6. Teacher vs HypeNet\nPerplexity, passkey retrieval beyond the training length, and "
                      "decode time and cache memory by context length (the paper's Figure 1, right)."),
    new_code_cell("""report = pipeline.compare(config, WORKDIR, teacher_dir, final_dir, tok,
                          train_length=int(config.stage1.data.seq_len))
display(Markdown(report["markdown"]))
for name in ("passkey.png", "decode.png"):
    display(Image(os.path.join(WORKDIR, name)))"""),
    new_markdown_cell("## 7. Generation\n`jaxsuite.generate` runs HypeNet like any jaxsuite LM; its cache keeps "
                      "keys/values only for the attention layers and a fixed-size state for the Lightning ones."),
    new_code_cell("""out = jaxsuite.generate(hypenet, [tok.encode("import os\\n")], max_new_tokens=24, temperature=0.0)
print(repr(tok.decode(out.sequences()[0])))
cache = hypenet.init_cache(1, 4096)
print({i: {k: v.shape for k, v in layer.items()} for i, layer in enumerate(cache.layers)})"""),
]

LDL_FORECASTING = [
    new_markdown_cell("""# Probabilistic forecasting with multi-expert label distributions (LDL-MoE) on M5

arXiv 2602.04678 forecasts *distributions*: several experts, mixed by a gate, each predict a label distribution
over future sales, trained with Maximum Mean Discrepancy (MMD); a pattern-aware variant splits the forecast
into trend, seasonality, changepoint and volatility components. This notebook generates M5-format data from a
known process, looks at the 12-level hierarchy, trains the LDL models beside four baselines on the same
rolling-origin windows and reads the M5 metrics (WRMSSE, WSPL), CRPS, MMD and interval coverage.

`LDL_VARIANT=test` (what the tests use) takes seconds; the default `cpu` takes several minutes. With the real
Kaggle files, use `configs/ldl_m5.py` and `--config.data.folder=...`."""),
    new_code_cell("""import json, os
import numpy as np
from IPython.display import Image, Markdown, display
from jaxsuite.core.config_utils import load_config
from jaxsuite.forecast import job
from jaxsuite.forecast.m5_data import aggregate, load_m5
from jaxsuite.forecast.m5_generate import generate_m5

VARIANT = os.environ.get("LDL_VARIANT", "cpu")
WORKDIR = os.environ.get("LDL_WORKDIR", os.path.abspath(f"runs/ldl_notebook_{VARIANT}"))
config = load_config("configs/ldl_tiny.py", VARIANT)
print(VARIANT, "->", WORKDIR)"""),
    new_markdown_cell("## 1. Data: M5 files from a known process\nIntermittent demand, weekly and yearly seasonality, "
                      "price elasticity, events, SNAP days, trend changepoints and volatility regimes; the truth is "
                      "kept in `truth.json`."),
    new_code_cell("""g = config.data.generate
folder = os.path.join(WORKDIR, "data")
info = generate_m5(folder, n_items_per_dept=g.items_per_dept, stores=tuple(g.stores), n_days=g.days, seed=g.seed)
data = load_m5(folder)
h = aggregate(data)
print(data.sales.shape, "bottom series x days;", h.series.shape[0], "series over the 12 levels")
print("share of zero days at the bottom level:", float((data.sales == 0).mean()))
print({lv: int((h.level == lv).sum()) for lv in range(1, 13)})"""),
    new_markdown_cell("## 2. Train and score every model\nThe LDL variants (discrete bins, continuous Gaussian "
                      "mixture, pattern-aware) and the baselines (seasonal naive, Gaussian net, quantile net, "
                      "numpyro structural model) on the same windows, over the config's seeds and origins."),
    new_code_cell("""results = job.run(config, WORKDIR)
display(Markdown(results["markdown"]))"""),
    new_markdown_cell("## 3. Fan charts and the pattern-aware components"),
    new_code_cell("""for name in ("ldl_continuous", "structural_bayes"):
    display(Image(os.path.join(WORKDIR, f"fan_{name}.png")))
display(Image(os.path.join(WORKDIR, "components.png")))
best = min(results["summary"], key=lambda m: results["summary"][m]["all"]["wspl"]["mean"])
print("lowest WSPL:", best)"""),
]

CPMOBIUS = [
    new_markdown_cell("""# CPMobius: coach-player reinforcement learning without data

CPMobius (arXiv 2602.02979) trains a model's math reasoning with no external training data. A **Coach**
proposes math problems from one fixed prompt, a **Player** samples n solutions to each, and the Player is
rewarded by **majority vote** over its own `\\boxed{}` answers (no ground truth). The Coach is rewarded by the
**change in the Player's accuracy on a validation (probe) set** after the Player's update, which rewards
proposing problems the Player learns from. This notebook looks at the verifiable environment and the reward
formulas, then runs the tiny CPU config (`configs/cpmobius_tiny.py`), which compares CPMobius with two
data-free baselines, R-Zero and RENT, from the same small base model.

The tests run this notebook with
the workdir from `JAXSUITE_NOTEBOOK_WORKDIR` and the `test` variant from `JAXSUITE_NOTEBOOK_VARIANT` (default
`cpu`)."""),
    new_code_cell("""import json, os
import numpy as np
from IPython.display import Image, display
from jaxsuite.core.config_utils import load_config
from jaxsuite.rl import math_env, objectives, rewards
from jaxsuite.rl.cpmobius import coach_player, job

VARIANT = os.environ.get("JAXSUITE_NOTEBOOK_VARIANT", "cpu")
WORKDIR = os.environ.get("JAXSUITE_NOTEBOOK_WORKDIR", os.path.abspath(f"runs/cpmobius_notebook_{VARIANT}"))
print(VARIANT, "->", WORKDIR)"""),
    new_markdown_cell("## 1. The verifiable environment\n`math_env.ProblemGenerator` writes short problems with "
                      "exact answers (the tiny config uses addition, subtraction and multiplication of numbers up "
                      "to 20, the second factor of a product at most 12); `validate_problem_text` accepts a Coach proposal only "
                      "in exactly one of these formats. `extract_boxed` takes the last `\\boxed{...}` of a "
                      "response and `answers_equivalent` compares answers by value. "
                      "`rewards.majority_vote_rewards` is the Player's reward: +1 for the holders of the unique "
                      "most frequent answer, -1 for everyone else, and -1 for all on a tie or when nobody boxed an "
                      "answer (missing answers vote together as \"no box\")."),
    new_code_cell("""gen = math_env.ProblemGenerator(kinds=["add", "sub", "mul"], max_operand=20)
for q in gen.batch(5, seed=0):
    print(f"{q.kind:4s} {q.problem:10s} -> {q.answer}")
print("valid proposal:", gen.validate_problem_text("23+58=?\\n"))
print("invalid proposal (spaces):", gen.validate_problem_text("23 + 58 = ?"))

for text in ["So 23+58=\\\\boxed{81}.", "\\\\boxed{\\\\frac{1}{2}}", "no box here"]:
    print(repr(text), "->", repr(math_env.extract_boxed(text)))
for a, b in [("0.5", "\\\\frac{1}{2}"), ("x=3", "3"), ("\\\\sqrt{8}", "2\\\\sqrt{2}"), ("81", "80")]:
    print(f"{a!r} == {b!r}: {math_env.answers_equivalent(a, b)}")

groups = {"clear majority": ["81", "81", "81", "80"], "one missing box": ["81", "81", None, "80"],
          "tie": ["81", "81", "80", "80"], "no boxes": [None, None, None, None]}
for name, answers in groups.items():
    print(f"{name:16s} {str(answers):28s} -> {rewards.majority_vote_rewards(answers)}")"""),
    new_markdown_cell("## 2. The formulas\n**Player:** GRPO normalises each reward within its group (the n "
                      "answers to one problem), `A = (r - mean) / (std + eps)`; a group whose rewards are all equal "
                      "(the tie, the empty group) gets zero advantages and teaches nothing. **Coach:** for each kept "
                      "problem, `R_i = 100 * (V_t - V_{t-1}) * m_i`, with `V_t` the Player's greedy probe accuracy "
                      "after the update and `m_i` the problem's scale: with `coach_scale=\"advantage\"` (the "
                      "config's choice) the mean of its non-zero Player advantages weighted by response length "
                      "(`None`, and so `R_i = -1`, when there is none); with `\"reward\"` its mean Player reward. "
                      "Since GRPO advantages sum to zero within a group, the \"advantage\" scale is non-zero only "
                      "when the responses differ in length (last line below)."),
    new_code_cell("""r = np.concatenate([rewards.majority_vote_rewards(a) for a in groups.values()])
group_ids = np.repeat(np.arange(len(groups)), 4)
adv = objectives.group_advantages(r, group_ids).reshape(len(groups), 4)
for name, a in zip(groups, adv):
    print(f"{name:16s} advantages {np.round(a, 3)}")

lengths = np.asarray([6, 6, 9, 4])          # response lengths in tokens, made up for the example
r_groups = r.reshape(len(groups), 4)
scales = [coach_player.coach_scale(a, lengths, rg, "advantage") for a, rg in zip(adv, r_groups)]
print("m_i (advantage):", [None if m is None else round(m, 4) for m in scales])
print("m_i (reward):   ", [coach_player.coach_scale(a, lengths, rg, "reward")
                           for a, rg in zip(adv, r_groups)])
print("coach rewards for V: 0.500 -> 0.625:", np.round(coach_player.coach_rewards(0.625 - 0.5, scales), 4))
equal = coach_player.coach_scale(adv[0], np.full(4, 6), r_groups[0], "advantage")
print("m_i with equal lengths:", round(equal, 6))"""),
    new_markdown_cell("## 3. Run the tiny config\n`job.run` first makes a small Qwen3-architecture model "
                      "(byte tokenizer) competent by a short SFT on generated problems in both roles (Coach: prompt "
                      "-> problem, Player: problem -> `\\boxed{answer}`), then runs every method in "
                      "`config.methods` (CPMobius, R-Zero, RENT) for every seed from that same base, recording the "
                      "Player's greedy accuracy on the probe set every step and on a held-out test set every "
                      "`rl.eval_every` steps. The `test` variant (a 1-layer model, 10 SFT steps, 3 RL steps, one "
                      "seed) only checks that everything runs: its numbers say nothing about the methods. The "
                      "default `cpu` variant runs 900 SFT steps and 3 methods x 3 seeds x 30 RL steps. Runs are "
                      "resumable: a second call reads finished runs back."),
    new_code_cell("""config = load_config("configs/cpmobius_tiny.py", VARIANT)
print("methods:", list(config.methods), "| seeds:", list(config.seeds), "| RL steps:", config.rl.steps)
results = job.run(config, WORKDIR)"""),
    new_markdown_cell("## 4. Results\nHeld-out test accuracy (ground truth, greedy decoding) before and after RL, "
                      "averaged over seeds, with rollout throughput and the time of one Player update; "
                      "`accuracy.png` plots test and probe accuracy per step, `coach_reward.png` the mean Coach "
                      "(CPMobius) and Challenger (R-Zero) reward per step."),
    new_code_cell("""def fmt(x, spec, unit):
    return "n/a" if x is None else format(x, spec) + unit

for m, res in results["methods"].items():
    print(f"{m:8s} test accuracy {res['test_acc_initial_mean']:.3f} -> {res['test_acc_final_mean']:.3f} | "
          f"seeds improved {res['seeds_improved']}/{len(config.seeds)} | "
          f"rollout {fmt(res['rollout_tokens_per_s_mean'], '.0f', ' tokens/s')} | "
          f"player update {fmt(res['player_update_seconds_mean'], '.3f', ' s')}")
display(Image(os.path.join(WORKDIR, "accuracy.png")))
if os.path.exists(os.path.join(WORKDIR, "coach_reward.png")):
    display(Image(os.path.join(WORKDIR, "coach_reward.png")))
else:
    print("no coach_reward.png: no coach (CPMobius) or challenger (R-Zero) reward was recorded")"""),
    new_markdown_cell("## 5. Inside one run\nEvery run writes one line per step to `metrics.jsonl`: the probe "
                      "accuracy `V_t` (`val_acc`), the number of problems kept by the filter (`kept_groups`), the "
                      "Coach's mean reward (only on steps where it was updated) and `V_t - V_{t-1}` (`delta_v`). "
                      "Step 0 is the base model."),
    new_code_cell("""run_dir = os.path.join(WORKDIR, "runs", f"cpmobius_seed{config.seeds[0]}")
with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
for row in rows[:8]:
    cols = [f"{k}={row[k]:.4g}" if isinstance(row.get(k), float) else f"{k}={row.get(k)}"
            for k in ("val_acc", "kept_groups", "coach_reward_mean", "delta_v")]
    print(f"step {row['step']:3d}: " + ", ".join(cols))"""),
]

LATENTCHEM = [
    new_markdown_cell("""# LatentChem: chemistry reasoning in continuous latent space

LatentChem (arXiv 2602.07075) lets a chemistry LM **reason in continuous space**: after `<start_latent>` the
last hidden state goes through a projector and comes back as the next input embedding instead of a sampled
token, and the model **stops adaptively** when its LM head's argmax is `<end_latent>` (or at a step limit),
then writes the answer in text. Molecules enter the prompt through a **molecule adapter** (learned queries
cross-attending over a frozen SMILES encoder's features, giving soft tokens at `<mol_pad>` placeholders); an
optional **updater** lets those soft tokens attend to the thoughts so far. Training follows the **Coconut
curriculum** (stage k replaces the first k chain-of-thought steps by latent steps) and ends with **GRPO** on
format, answer-type and RDKit-checked correctness rewards. This notebook looks at the tasks, the token layouts
and the latent loop, then runs the tiny config (`configs/latentchem_tiny.py`): a CoT baseline and a latent
model trained side by side.

The tests run this notebook with
the workdir from `JAXSUITE_NOTEBOOK_WORKDIR` and the `test` variant from `JAXSUITE_NOTEBOOK_VARIANT` (default
`cpu`)."""),
    new_code_cell("""import os
from flax import nnx
from IPython.display import Image, display
import jaxsuite
from jaxsuite.core.config_utils import load_config
from jaxsuite.core.tokenizer import load_tokenizer
from jaxsuite.latent import job
from jaxsuite.latent.chem_tasks import TaskGenerator, check_answer
from jaxsuite.latent.head import LatentReasoner, LatentTokens, latent_hook
from jaxsuite.latent.sequences import SequenceFormat, build_row, prompt_ids
from jaxsuite.models.factory import init_model

VARIANT = os.environ.get("JAXSUITE_NOTEBOOK_VARIANT", "cpu")
WORKDIR = os.environ.get("JAXSUITE_NOTEBOOK_WORKDIR", os.path.abspath(f"runs/latentchem_notebook_{VARIANT}"))
print(VARIANT, "->", WORKDIR)"""),
    new_markdown_cell("## 1. The tasks\n`TaskGenerator` writes short questions about generated molecules with "
                      "RDKit labels and a programmatic step-by-step rationale (`steps`) that ends at the answer. "
                      "`check_answer` grades an answer text: counts and yes/no by value, edits chemically (the "
                      "answer must parse to one molecule with the named group added or removed and the rest "
                      "preserved), so an invalid SMILES or a wrong count is rejected."),
    new_code_cell("""gen = TaskGenerator(kinds=["rings", "hbd", "has_group", "add_group"], seed=0)
examples = gen.batch(4, seed=0)
for e in examples:
    print(f"[{e.task}] {e.question}")
    for step in e.steps:
        print("    step:", step)
    print("    answer:", e.answer, "| check_answer(reference):", check_answer(e, e.answer))

edit = next(e for e in examples if e.answer_type == "smiles")
count = next(e for e in examples if e.answer_type == "int")
print(f"{edit.question!r}: invalid SMILES 'C1CC(' ->", check_answer(edit, "C1CC("))
print(f"{edit.question!r}: the source unchanged {edit.source!r} ->", check_answer(edit, edit.source))
print(f"{count.question!r}: wrong count {int(count.answer) + 1} ->", check_answer(count, str(int(count.answer) + 1)))"""),
    new_markdown_cell("## 2. The sequences\nThe byte tokenizer uses ids 0-258; the six special tokens take "
                      "259-264 (`LatentTokens.after(259)`) of the model's 272. Every prompt starts with `<bos>` and, "
                      "with the adapter on (4 queries here, as in the config), the molecule block (`<mol_start>`, "
                      "one `<mol_pad>` per query, `<mol_end>`). The "
                      "three training forms: answer only, chain of thought, and curriculum stage k, where the "
                      "prompt ends with `<start_latent>` and the first k steps become k `<latent>` slots (filled "
                      "with projected hidden states in training) closed by `<end_latent>`. The loss covers the "
                      "target; at latent slots it teaches `<latent>` (keep thinking) and, at the last one, "
                      "`<end_latent>` (stop)."),
    new_code_cell("""tok = load_tokenizer("byte")
tokens = LatentTokens.after(259)
fmt = SequenceFormat(tokens, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, num_queries=4)
names = {i: f"<{name}>" for name, i in tokens.names().items()}
names.update({tok.bos_id: "<bos>", tok.eos_id: "<eos>"})

def render(ids):
    \"\"\"Special ids by name, runs of byte ids as decoded text.\"\"\"
    parts, run = [], []
    for i in ids:
        if i in names:
            parts += [repr(tok.decode(run))] if run else []
            parts.append(names[i])
            run = []
        else:
            run.append(i)
    return " ".join(parts + ([repr(tok.decode(run))] if run else []))

print(tokens.names())
ex = examples[0]
for form, stage in (("answer", 0), ("cot", 0), ("latent", 1)):
    row = build_row(ex, tok, fmt, form=form, stage=stage)
    p = row["prompt_len"]
    print(f"{form} (stage {stage}): {len(row['ids'])} ids, prompt {p}, latent slots {row['n_latent']}")
    print("  prompt:", render(row["ids"][:p]))
    print("  target:", render(row["ids"][p:]))"""),
    new_markdown_cell("## 3. The latent loop on an untrained model\n`LatentReasoner` wraps any jaxsuite LM (here "
                      "a tiny random `CausalLM`, without the molecule adapter) and keeps its interface, so "
                      "`jaxsuite.generate` runs it; `latent_hook(max_steps)` replaces the prompt prefill: the prompt "
                      "goes into the KV cache once, then each latent step is one cached decode step with the "
                      "projected hidden state as the input embedding. Stopping is per row: a row whose argmax is "
                      "`<end_latent>` stops, and from then on only writes masked cache slots while the other rows "
                      "go on, all in one batch. Then `<end_latent>` is fed and the answer is decoded. "
                      "`extra_cache_slots` must be `max_steps + 1` (the latent slots and `<end_latent>`). "
                      "`out.extras[\"latent_steps\"]` holds the steps each row took. An untrained model has no "
                      "reason to predict `<end_latent>`, so expect both rows to run to the limit (4). To see one "
                      "row stop while the other goes on, the second call uses a quirk of this random model: with "
                      "tied embeddings it tends to predict its own input token (see the answer ids, all "
                      "`<end_latent>` = 260, the last token fed), so a row whose prompt ends with `<end_latent>` "
                      "instead of `<start_latent>` has `<end_latent>` as its argmax at once and takes 0 steps."),
    new_code_cell("""cfg = jaxsuite.DecoderConfig(vocab_size=272, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256)
model = LatentReasoner(init_model(cfg, seed=0), tokens, rngs=nnx.Rngs(1))
plain = SequenceFormat(tokens, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id)   # no molecule block
prompts = [prompt_ids(e, tok, plain, latent=True) for e in examples[2:4]]
print("prompt lengths:", [len(p) for p in prompts], "| last prompt token:", [names[p[-1]] for p in prompts])
out = jaxsuite.generate(model, prompts, 8, temperature=0.0, stop_tokens=tok.eos_id, pad_token_id=tok.pad_id,
                        prefill_hook=latent_hook(4), extra_cache_slots=5)
print("latent_steps:", out.extras["latent_steps"])
print("answer ids (untrained, meaningless):", [list(map(int, s)) for s in out.sequences()])

mixed = [prompts[0], prompts[1][:-1] + [tokens.end_latent]]          # row 1 ends with <end_latent>
out = jaxsuite.generate(model, mixed, 8, temperature=0.0, stop_tokens=tok.eos_id, pad_token_id=tok.pad_id,
                        prefill_hook=latent_hook(4), extra_cache_slots=5)
print("latent_steps, row 1 ending with <end_latent>:", out.extras["latent_steps"])"""),
    new_markdown_cell("## 4. Run the tiny config\n`job.run` generates train and held-out test questions, "
                      "pre-trains a small SMILES encoder (masked tokens) whose features feed the adapter's 4 soft "
                      "tokens, and trains a byte-level Qwen3-architecture model answer-only, then with CoT. From "
                      "there the CoT baseline continues CoT training for as many steps as the whole curriculum, "
                      "while the latent model goes through the curriculum stages and then GRPO. Both answer the "
                      "test set greedily. The `test` variant (a 1-layer model, a few steps per stage, 2 stages, "
                      "2 GRPO steps, 8 test questions) only checks that everything runs: its numbers say nothing "
                      "about the method. The default `cpu` variant trains for minutes (300 answer-only + 600 CoT "
                      "steps, 3 stages of 150 steps, 40 GRPO steps, 128 test questions). Each stage is resumable."),
    new_code_cell("""config = load_config("configs/latentchem_tiny.py", VARIANT)
print("tasks:", list(config.data.kinds), "| curriculum stages:", config.latent.stages, "| GRPO steps:",
      config.grpo.steps)
results = job.run(config, WORKDIR)
print("train / test examples:", results["train_examples"], "/", results["test_examples"])"""),
    new_markdown_cell("## 5. Results\nAccuracy (RDKit-checked) of the CoT baseline and of the latent model, per "
                      "task; the paper's non-tie win rate (among questions exactly one model gets right, the "
                      "share the latent model wins; NaN when all are ties); reasoning passes, the forward passes "
                      "spent before `<answer>` (CoT: its reasoning tokens; latent: latent steps plus any reasoning "
                      "tokens still written); the wall-clock speed-up of answering the test set (compilation "
                      "excluded); the causal test, the latent model's accuracy with its latents replaced by zeros "
                      "or by noise; and GRPO's summary. `stages.png` shows accuracy and steps after each "
                      "curriculum stage."),
    new_code_cell("""cot, lat = results["cot"], results["latent"]
for name, s in (("CoT", cot), ("latent", lat)):
    print(f"{name:6s} accuracy {s['accuracy']:.3f} | per task {s['accuracy_by_task']} | "
          f"mean reasoning passes {s['mean_reasoning_passes']:.2f} | latent steps {s['mean_latent_steps']:.2f} | "
          f"text steps {s['mean_text_steps']:.2f} | {s['seconds']:.2f} s")
print("win rate (latent vs CoT):", results["win_rate"])
print(f"reasoning pass reduction: {results['reasoning_pass_reduction']:.2f}x | "
      f"wall_clock_speedup: {results['wall_clock_speedup']:.2f}x")
print("causal test (accuracy):", {k: v if isinstance(v, float) else v["accuracy"]
                                  for k, v in results["causal_test"].items()})
for c in results["curriculum"]:
    print(f"stage {c['stage']}: accuracy {c['accuracy']:.3f}, {c['mean_latent_steps']:.2f} latent + "
          f"{c['mean_text_steps']:.2f} text steps")
print("GRPO:", results["grpo"])
display(Image(os.path.join(WORKDIR, "stages.png")))"""),
]

AGENTS = [
    new_markdown_cell("""# The agent runtime: chat format, tools, sandbox, retrieval, multi-turn RL, a server

`jaxsuite.agents` is what the agent systems (AgentCPM-Explore and -Report, the collaboration-gain study) and
the code-judging ones (SE-Bench, EvoOpt-LLM) share: the Qwen3 chat and tool-call format, typed tools, a
sandbox for generated code, BM25 retrieval over a local corpus, batched multi-turn episodes through
`jaxsuite.generate` with the token record RL trains on, and an OpenAI-compatible server. This notebook goes
through each piece, then runs the demonstration job (`configs/agent_tiny.py`): a tiny model taught to answer
lookup questions with a search tool, by SFT then GRPO. See docs/agents.md.

The tests run this notebook with the workdir from `JAXSUITE_NOTEBOOK_WORKDIR` and the `test` variant from
`JAXSUITE_NOTEBOOK_VARIANT` (default `cpu`)."""),
    new_code_cell("""import json, os
from IPython.display import Image, display
from jaxsuite.agents.chat import ChatFormat, render_qwen3
from jaxsuite.agents.parse import parse_assistant
from jaxsuite.agents.sandbox import Limits, SandboxPool
from jaxsuite.agents.retrieval import BM25Index
from jaxsuite.agents.tools import Toolbox, calculator, search_tool
from jaxsuite.agents.lookup import facts, job
from jaxsuite.core.config_utils import load_config

VARIANT = os.environ.get("JAXSUITE_NOTEBOOK_VARIANT", "cpu")
WORKDIR = os.environ.get("JAXSUITE_NOTEBOOK_WORKDIR", os.path.abspath(f"runs/agent_notebook_{VARIANT}"))
print(VARIANT, "->", WORKDIR)"""),
    new_markdown_cell("## 1. The chat format\nMessages are OpenAI-style dicts. Tools are listed in the system turn "
                      "inside `<tools>`; the model calls them with `<tool_call>` JSON blocks; tool results come back "
                      "in one user turn of `<tool_response>` blocks. `parse_assistant` reads a model's turn back."),
    new_code_cell("""box = Toolbox([calculator])
messages = [{"role": "user", "content": "What is 330 metres in feet?"}]
print(render_qwen3(messages, box.schemas, add_generation_prompt=True))
turn = parse_assistant('<think>convert</think>\\n<tool_call>\\n{"name": "calculator", '
                       '"arguments": {"expression": "330 * 3.28084"}}\\n</tool_call>')
print("reasoning:", turn.reasoning, "| calls:", [(c.name, c.arguments) for c in turn.tool_calls])
print("observation:", box.call(turn.tool_calls[0]).text)
print("a broken call:", parse_assistant("<tool_call>{name: calculator</tool_call>").errors[0].reason)"""),
    new_markdown_cell("## 2. The sandbox\nGenerated code runs in a confined subprocess: time, memory and process "
                      "limits, no network, a private folder (as root also its own uid and filesystem view). "
                      "Each run reports an outcome instead of failing."),
    new_code_cell("""programs = {
    "prints": "print(sum(range(10)))",
    "loops forever": "while True: pass",
    "allocates 16 GB": "x = bytearray(16 << 30)",
    "opens a socket": "import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)",
}
with SandboxPool(workers=4, limits=Limits(wall_seconds=2, memory_bytes=1 << 30)) as pool:
    for (name, code), r in zip(programs.items(), pool.map(list(programs.values()))):
        print(f"{name:16s} -> {r.outcome:8s} {r.observation(120).splitlines()[-1]!r}")
    print("isolation:", r.isolation)"""),
    new_markdown_cell("## 3. Retrieval over a generated fact base\nMade-up countries, a page each, indexed with "
                      "BM25 (bm25s); the search tool shows results as AgentCPM's does."),
    new_code_cell("""train_c, test_c = facts.split_countries(10, 0.2, seed=0)
pages = [facts.page(c) for c in train_c + test_c]
index = BM25Index(pages)
question = facts.questions(test_c, split="test")[0]
print(question.question, "->", question.answer)
print(Toolbox([search_tool(index, k=1)]).call(parse_assistant(facts.teacher_turns(question)[0]).tool_calls[0]).text)"""),
    new_markdown_cell("## 4. The demonstration job\nA tiny model, untrained, then after SFT on teacher trajectories "
                      "(search, then answer from the result), then after GRPO on multi-turn rollouts; evaluated on "
                      "held-out countries. The same function `python -m jaxsuite.launch` calls, so a stopped "
                      "notebook resumes."),
    new_code_cell("""config = load_config(f"configs/agent_tiny.py:{VARIANT}")
results = job.run(config, WORKDIR)
for stage, ev in results["evaluations"].items():
    print(f"{stage:9s} success {ev['success_rate']:.3f} | format errors/turn {ev['format_error_rate']:.3f} | "
          f"turns/episode {ev['turns_per_episode']:.2f} | stops {ev['stop_reasons']}")
display(Image(os.path.join(WORKDIR, "stages.png")))"""),
    new_markdown_cell("## 5. A trace\nOne JSON line per evaluated episode; `render_trace` prints it as a transcript."),
    new_code_cell("""from jaxsuite.agents.traces import read_trace, render_trace
print(render_trace(read_trace(os.path.join(WORKDIR, "traces.jsonl"))[0], max_chars=200))"""),
    new_markdown_cell("## 6. Serving it\n`python -m jaxsuite.serve --model WORKDIR/hf` serves the trained model over "
                      "the OpenAI chat-completions API; here the same app runs in a thread and an OpenAI-compatible "
                      "client (`OpenAIChatModel`, over httpx) asks it a held-out question with the search tool."),
    new_code_cell("""from jaxsuite.agents.chat_model import ChatRequest, LocalChatModel, OpenAIChatModel
from jaxsuite.agents.server import ServerThread, make_app
served = LocalChatModel.from_folder(os.path.join(WORKDIR, "hf"), name="agent-tiny")
env = job.build_environment(config, index)
with ServerThread(make_app(served)) as url:
    client = OpenAIChatModel(url, model="agent-tiny")
    [reply] = client.complete([ChatRequest(env.initial_messages(question), tools=env.tools, temperature=0.0,
                                           max_tokens=32)])
print(url, "->", reply.choices[0].finish_reason, reply.choices[0].message)"""),
]

SEBENCH = [
    new_markdown_cell("""# SE-Bench: does a model internalise a new library?

NumPy renamed into `zwc` (the released names: `array` is `zwc.yitaf`, `numpy.linalg.inv` is `zwc.rfx.quvohe`),
its docs rewritten so that they never say numpy, and tasks that are trivial with those docs and impossible
without them. Training regimes differ in what they leave in the weights: SFT with the docs in the prompt
(Open-SFT) or without (Closed-SFT), RL open and closed book, SFT then RL, self-play. This notebook builds the
package, shows the evaluator on good and bad solutions, then runs the regimes at toy scale
(`configs/sebench_tiny.py`). See docs/sebench.md.

The tests run this notebook with the workdir from `JAXSUITE_NOTEBOOK_WORKDIR` and the `test` variant from
`JAXSUITE_NOTEBOOK_VARIANT` (default `cpu`)."""),
    new_code_cell("""import json, os, tempfile
from IPython.display import Image, display
from jaxsuite.core.config_utils import load_config
from jaxsuite.sebench import evaluate as E, job
from jaxsuite.sebench.docs import package_docs, rewrite_docs
from jaxsuite.sebench.names import numpy_mapping
from jaxsuite.sebench.package import build_package
from jaxsuite.sebench.tasks import generate_tasks, load_package

VARIANT = os.environ.get("JAXSUITE_NOTEBOOK_VARIANT", "cpu")
WORKDIR = os.environ.get("JAXSUITE_NOTEBOOK_WORKDIR", os.path.abspath(f"runs/sebench_notebook_{VARIANT}"))
print(VARIANT, "->", WORKDIR)"""),
    new_markdown_cell("## 1. The renamed library\nOne `random.Random(42)`, a name of 5-7 letters per function in "
                      "the released order: the names equal the released `zwc` package's. Arrays are `ZWCArray`s, "
                      "which keep only shape, dtype, size, ndim and T: numpy's methods are gone."),
    new_code_cell("""mapping = numpy_mapping()
print({name: mapping.main[name] for name in ("array", "mean", "sum", "cumsum")}, "| linalg.inv ->",
      mapping.qualified("inv", submodule=True))
docs = rewrite_docs(mapping)
folder = build_package(tempfile.mkdtemp(), mapping, docs=package_docs(docs, mapping))
zwc = load_package(folder, "zwc")
a = zwc.yitaf([[1.0, 2.0], [3.0, 4.0]])
print(repr(a), "| mean:", zwc.kocito(a), "| inverse:", repr(zwc.rfx.quvohe(a)).replace("\\n", ""))
try:
    a.mean()
except AttributeError as e:
    print("a.mean() ->", e)
print(zwc.kocito.__doc__[:420])"""),
    new_markdown_cell("## 2. A task and the evaluator\nThe last python block of a response runs in the sandbox on "
                      "every test input (3 s); an AST check wants the result to depend on `zwc`; numpy cannot be "
                      "imported there. Six outcomes: acc, without_zwc, numpy, exe_error, result_error, timeout."),
    new_code_cell("""tasks = generate_tasks(mapping, folder, seed=0, functions=["cumsum", "max"], per_function=2, multi_tasks=2)
task = tasks["test_multi"][0]
print(task["query"], "| example:", task["example"], "| reference:", task["solution"].splitlines()[-1].strip())
m = mapping.main
responses = {
    "uses zwc": f"```python\\nimport zwc\\ndef solve(x):\\n    {task['solution'].splitlines()[-1].strip()}\\n```",
    "plain Python": "```python\\ndef solve(x):\\n    return max(x)\\n```",
    "imports numpy": f"```python\\nimport zwc, numpy\\ndef solve(x):\\n    return zwc.{m['max']}(numpy.cumsum(x))\\n```",
    "sneaks numpy in": f"```python\\nimport zwc\\ndef solve(x):\\n    np = __import__('nu' + 'mpy')\\n    return zwc.{m['max']}(np.cumsum(x))\\n```",
    "loops forever": f"```python\\nimport zwc\\ndef solve(x):\\n    while True: pass\\n    return zwc.{m['max']}(x)\\n```",
}
outcomes = E.evaluate_many([(task, r) for r in responses.values()], package_dir=folder, mapping=mapping)
for name, o in zip(responses, outcomes):
    print(f"{name:16s} -> {o.category:12s} {o.reason}")"""),
    new_markdown_cell("## 3. The regimes at toy scale\nA tiny Qwen3-architecture model per regime and seed, "
                      "evaluated without the docs (what it internalised) and with them. The same function "
                      "`python -m jaxsuite.launch` calls, so a stopped notebook resumes."),
    new_code_cell("""config = load_config(f"configs/sebench_tiny.py:{VARIANT}")
results = job.run(config, WORKDIR)
k = results["k"]
for regime, stats in results["summary"].items():
    print(f"{regime:14s}", "  ".join(f"{key} {v['mean']:.2f}" for key, v in stats.items()))
display(Image(os.path.join(WORKDIR, "regimes.png")))"""),
    new_markdown_cell("## 4. What a trained model wrote\nEvery evaluated response is kept with its outcome in "
                      "`<workdir>/seed_<s>/<regime>/eval.json`."),
    new_code_cell("""seed = config.seeds[0]
record = json.load(open(os.path.join(WORKDIR, f"seed_{seed}", "closed_sft", "eval.json")))["responses"][0]
print(record["setting"], record["split"], record["task"], "->", record["category"], record["reason"])
print(record["response"][:400])"""),
]

EVOOPT = [
    new_markdown_cell("""# EvoOpt-LLM: words to MILP, new rules into old models, and learned variable pruning

Generated industrial problems (production, transportation, assignment, knapsack, facility location, blending,
scheduling, inventory) with their optima; the execution check that runs a solver program in the sandbox and
judges its optimum whatever API it uses; constraint injection verified by solving; and the predict-and-search
GNN. Then the three modules at toy scale (`configs/evoopt_tiny.py`). See docs/evoopt.md.

The tests run this notebook with the workdir from `JAXSUITE_NOTEBOOK_WORKDIR` and the `test` variant from
`JAXSUITE_NOTEBOOK_VARIANT` (default `cpu`)."""),
    new_code_cell("""import json, os
import numpy as np
from IPython.display import Image, display
from jaxsuite.core.config_utils import load_config
from jaxsuite.optmodel import checker, families, injection, job
from jaxsuite.optmodel.model import solve_scip, to_lp
from jaxsuite.optmodel.programs import APIS, answer_text, render_program
from jaxsuite.optmodel.repair import repair_answer

VARIANT = os.environ.get("JAXSUITE_NOTEBOOK_VARIANT", "cpu")
WORKDIR = os.environ.get("JAXSUITE_NOTEBOOK_WORKDIR", os.path.abspath(f"runs/evoopt_notebook_{VARIANT}"))
print(VARIANT, "->", WORKDIR)"""),
    new_markdown_cell("## 1. A problem with ground truth\nThe statement holds every number of the model; the "
                      "optimum is HiGHS's, checked against SCIP."),
    new_code_cell("""problem = families.generate("facility", rng=np.random.default_rng(0), size="toy", phrasing=0)
print(problem.statement, "\\n")
print(answer_text(problem.model)[:900])
print("optimum: HiGHS", round(problem.optimum, 4), "| SCIP", round(solve_scip(problem.model).objective, 4))"""),
    new_markdown_cell("## 2. The execution check in every API\nThe same model as cvxpy, PuLP, SCIP, HiGHS and SciPy "
                      "programs, each run in the sandbox and judged by ORLM's rule; then a broken program before "
                      "and after rule-based repair."),
    new_code_cell("""for api in APIS:
    result = checker.check_program(render_program(problem.model, api), problem.optimum, rule="orlm")
    print(f"{api:10s} -> {result.outcome:10s} objective {result.objective} correct {result.correct}")
broken = answer_text(problem.model).replace("import cvxpy as cp\\n", "").replace(" <= 0", " ≤ 0")
print("broken   ->", checker.check_program(broken, problem.optimum).outcome)
fixed, rules = repair_answer(broken)
print("repaired ->", checker.check_program(fixed, problem.optimum).outcome, "by", rules)"""),
    new_markdown_cell("## 3. Constraint injection\nA rule the current optimum breaks; the answer must keep the "
                      "objective and every constraint, and its optimum must be the original's plus the rule."),
    new_code_cell("""task = injection.make_injection(problem.model, np.random.default_rng(1))
print("rule:", task.rule, "| optimum", round(task.optimum_before, 3), "->", round(task.optimum_after, 3))
print("reference answer:", injection.verify_injection(task, injection.injection_answer(task)).to_dict())
print("model unchanged: ", injection.verify_injection(task, to_lp(task.original)).to_dict())"""),
    new_markdown_cell("## 4. The three modules at toy scale\nModel construction at several training sizes, "
                      "injection and pruning, with the same function `python -m jaxsuite.launch` calls, so a "
                      "stopped notebook resumes."),
    new_code_cell("""config = load_config(f"configs/evoopt_tiny.py:{VARIANT}")
results = job.run(config, WORKDIR)
k = results["k"]
for n, stats in results["construction"].items():
    print(f"{n:>4s} samples: executability {stats['raw']['executability']:.2f} -> {stats['repaired']['executability']:.2f}"
          f" repaired, accuracy mean@{k} {stats['raw'][f'mean@{k}']:.2f} -> {stats['repaired'][f'mean@{k}']:.2f}")
print("injection:", results["injection"])
print("pruning F1: LLM", round(results["pruning"]["llm"]["f1"], 3), "| GNN", round(results["pruning"]["gnn"]["small_prf"]["f1"], 3))
print("GNN search: gap", round(results["pruning"]["gnn"]["pruned_gap"], 4), "vs", round(results["pruning"]["gnn"]["plain_gap"], 4),
      f"plain, {results['pruning']['gnn']['speedup']:.2f}x the speed")
for plot in results["plots"]:
    display(Image(plot))"""),
]

TIERS = [
    new_markdown_cell("""# Tiered data management: raw pages to verified knowledge, with models in the loop

The L0 -> L4 pipeline of arXiv 2602.09003 on datatrove: HTML extraction with fallbacks, the UltraData L1 rules,
language identification, exact and MinHash dedup (L1); an LM judge's 0-5 labels distilled into a hashed n-gram
classifier (L2); LM refinement with a fact check (L3); verified, indexed Q&A and facts (L4). Then tiered against
mixed training on the same tokens, and the decay verification (`configs/tiers_tiny.py`). See docs/tiers.md.

The tests run this notebook with the workdir from `JAXSUITE_NOTEBOOK_WORKDIR` and the `test` variant from
`JAXSUITE_NOTEBOOK_VARIANT` (default `cpu`)."""),
    new_code_cell("""import json, os
from IPython.display import Image, display
from jaxsuite.core.config_utils import load_config
from jaxsuite.tiers import cleaning, corpus, job, refine

VARIANT = os.environ.get("JAXSUITE_NOTEBOOK_VARIANT", "cpu")
WORKDIR = os.environ.get("JAXSUITE_NOTEBOOK_WORKDIR", os.path.abspath(f"runs/tiers_notebook_{VARIANT}"))
print(VARIANT, "->", WORKDIR)"""),
    new_markdown_cell("## 1. The L1 rules on one noisy page\nInvisible and private-use characters, runs of blank "
                      "lines, navigation and button lines; then the document rules. The length bound counts words "
                      "(a CJK character is one), where the released rule counts characters in every language."),
    new_code_cell("""page = ("Home | About | Contact\\nSkip to main content\\nThe heapq\\u200b module keeps the smallest item "
        "first.\\ue000\\n\\n\\n\\nShare on Facebook\\nIt offers heappush and heappop, which run in logarithmic time.")
text, reason, edits = cleaning.clean_text(page, cleaning.L1Rules())
print(repr(text), "| dropped:", reason, "| edits:", {k: v for k, v in edits.items() if v})
chinese = "解析器每次读取一行文本，并为它找到的每条记录返回一个字段列表，然后继续处理下一行直到文件结束。"
print("released rule:", cleaning.document_verdict(chinese, cleaning.L1Rules.released()),
      "| ours:", cleaning.document_verdict(chinese, cleaning.L1Rules()))"""),
    new_markdown_cell("## 2. Extraction with fallbacks and language identification\nTrafilatura first; inscriptis "
                      "when it keeps too little; the standard library's parser last."),
    new_code_cell("""pages = {p.kind: p for p in corpus.embedded_corpus(seed=0, scale=0.1)}
lang = cleaning.LanguageIdFilter(["en"])
for kind in ("reference", "lesson", "news", "foreign"):
    name, text = cleaning.extract_with_fallbacks(pages[kind].html)
    print(f"{kind:10s} {name:12s} {lang.classify(text)[0]}  {text[:90]!r}")"""),
    new_markdown_cell("## 3. The fact check L3 applies\nNumbers and names must come from the source, and most "
                      "content words too."),
    new_code_cell("""source = "The function json.dumps serialises an object to a JSON string. It was added in Python 2.6."
for output in ("Q: What does json.dumps do?\\nA: The function json.dumps serialises an object to a JSON string.",
               "The function json.dumps was added in Python 3.9 and serialises an object.",
               "The function pickle.dumps serialises an object to a JSON string."):
    print(refine.fact_check(source, output))"""),
    new_markdown_cell("## 4. All tiers, then the training comparisons\nThe same function `python -m jaxsuite.launch` "
                      "calls: datatrove skips finished tasks and training resumes, so a stopped notebook resumes."),
    new_code_cell("""config = load_config(f"configs/tiers_tiny.py:{VARIANT}")
results = job.run(config, WORKDIR)
print("L0 -> L1:", results["L1"]["L0"], "->", results["L1"]["L1"], "| dropped:", results["L1"]["dropped"])
q = results["L2"]
print(f"L2: {q['L2']} kept at threshold {q['threshold']:.3f} ({q['threshold_from']}); held-out P/R/F1 "
      f"{q['heldout']['precision']:.2f}/{q['heldout']['recall']:.2f}/{q['heldout']['f1']:.2f}")
print("L3:", results["L3"]["kept"], "of", results["L3"]["outputs"], "outputs kept;", results["L3"]["rejected_because"])
print("L4:", results["L4"]["unique"], "verified items")
t = results["training"]
print("tiered:", t["tiered"]["heldout"])
print("mixed: ", t["mixed"]["heldout"])
for cand in config.decay.candidates:
    print(f"decay {cand}:", t["decay"][cand].get("heldout", t["decay"][cand]))
for plot in results["plots"]:
    display(Image(plot))"""),
]

INSTALL_TEXT = """## Running it in Colab or any fresh runtime
The next cell installs jaxsuite when it is not importable (in a checkout or the tests it does nothing). Set \
`JAXSUITE_SOURCE` there (or in the environment) to this repository's git URL, `git+https://<host>/<owner>/jaxsuite`, \
or to a built wheel. The configs ship inside the package, so the notebook runs from any folder.

Runtime: the default settings here run on a CPU runtime in minutes. On a TPU runtime install `jax[tpu]` as well, on \
a GPU runtime `jax[cuda12]` (Runtime > Change runtime type, then run the install cell): jax then uses the \
accelerator and the same cells run unchanged, the meshes taking every device it sees."""

INSTALL_CODE = """# Install jaxsuite where it is not importable yet (Colab, a fresh virtualenv); a no-op in a checkout.
import importlib.util, os, subprocess, sys
JAXSUITE_SOURCE = os.environ.get("JAXSUITE_SOURCE", "{default}")   # this repository's git URL, or a wheel
if importlib.util.find_spec("jaxsuite") is None:
    if not JAXSUITE_SOURCE:
        raise RuntimeError("set JAXSUITE_SOURCE to this repository's git URL (git+https://...) or a "
                           "jaxsuite wheel, then run this cell again")
    spec = (f"jaxsuite[{extra}] @ {{JAXSUITE_SOURCE}}" if JAXSUITE_SOURCE.startswith("git+")
            else f"{{JAXSUITE_SOURCE}}[{extra}]")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", spec])
    importlib.invalidate_caches()
print("jaxsuite from", os.path.dirname(importlib.util.find_spec("jaxsuite").origin))"""

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def colab_link(repository: str, name: str, branch: str = "main") -> str:
    """Colab's address for notebooks/<name> of a public GitHub repository (Colab opens GitHub paths only)."""
    prefix = "https://github.com/"
    if not repository.startswith(prefix) or repository.rstrip("/").count("/") != 4:
        raise ValueError(f"--repository-url must be https://github.com/<owner>/<name>, got {repository!r}")
    owner_name = repository[len(prefix):].rstrip("/").removesuffix(".git")
    return f"https://colab.research.google.com/github/{owner_name}/blob/{branch}/notebooks/{name}"


def with_install(cells, name: str, extra: str, repository: str | None):
    """The notebook's cells with the install cells after its title cell and, once the repository is public
    (`repository` given), a Colab badge at the top and that repository as the install cell's default source."""
    title = cells[0]
    if repository:
        title = new_markdown_cell(f"[![Open In Colab]({COLAB_BADGE})]({colab_link(repository, name)})\n\n"
                                  + title["source"])
    default = f"git+{repository.rstrip('/')}" if repository else ""
    install = [new_markdown_cell(INSTALL_TEXT), new_code_cell(INSTALL_CODE.format(extra=extra, default=default))]
    return [title, *install, *cells[1:]]


def write(cells, path: str) -> None:
    """Writes one notebook with stable cell ids (nbformat draws random ones, which would churn every rebuild)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    for k, cell in enumerate(cells):
        cell["id"] = f"{stem}-{k}"
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, path)


# name -> (cells, the extra its install cell asks for)
NOTEBOOKS = {"01_quickstart.ipynb": (QUICKSTART, "test"), "02_hypenet_halo.ipynb": (HYPENET_HALO, "all"),
             "03_ldl_forecasting.ipynb": (LDL_FORECASTING, "forecast"), "04_cpmobius.ipynb": (CPMOBIUS, "rl"),
             "05_latentchem.ipynb": (LATENTCHEM, "chem"), "06_agents.ipynb": (AGENTS, "agents"),
             "07_sebench.ipynb": (SEBENCH, "agents"), "08_evoopt.ipynb": (EVOOPT, "opt"),
             "09_tiers.ipynb": (TIERS, "data,agents")}


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository-url", default=None,
                        help="the public GitHub repository (https://github.com/<owner>/<name>): adds each "
                             "notebook's Open-in-Colab badge and makes it the install cell's default source")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="folder to write to")
    args = parser.parse_args(argv)
    for name, (cells, extra) in NOTEBOOKS.items():
        write(with_install(cells, name, extra, args.repository_url), os.path.join(args.out, name))
    print("wrote", ", ".join(os.path.join(args.out, n) for n in NOTEBOOKS))


if __name__ == "__main__":
    main()
