"""The two costs of one RL step of jaxsuite's RL core, each beside a PyTorch / transformers anchor on the same
weights in the same process:

  1. Rollout: `jaxsuite.rl.rollout.sample_responses` (n samples per prompt, temperature 0.7, top-p 0.9, with
     per-token sampler log-probs) against transformers `model.generate(do_sample=True, temperature=0.7,
     top_p=0.9, top_k=0, output_logits=True, return_dict_in_generate=True)` followed by the same log-probs,
     log_softmax(raw logits / 0.7) at the sampled tokens. No stop token on either side (a stop id that never
     occurs / eos_token_id=None, min_new_tokens = max_new_tokens), so every row generates exactly
     --new_tokens tokens and the token counts are equal. Reported as generated tokens/s.
  2. Update: one `Policy.update` (GRPO clipped surrogate + k3 KL to a frozen reference + entropy bonus,
     token-mean, AdamW with global-norm clipping, all one jitted step) on the packed rollout batch of
     batch*n rows x (prompt_len + new_tokens - 1) tokens, with the old log-probs given (so no extra scoring
     pass), against the same update written here in PyTorch (policy forward, reference forward under
     no_grad, log-softmax gather, ratio / clip / k3 / entropy, masked token mean, backward,
     clip_grad_norm_, torch.optim.AdamW). Reported as seconds per update.

The model is a Qwen3 built with random weights in transformers (every parameter randomised by
jaxsuite.testing, as the tests do), saved to a temporary folder and loaded with jaxsuite.hf.load_pretrained; float32
on both sides. Compilation / first-call costs are excluded (two warm-up calls each: PyTorch eager's first
calls are also slow); times are the median of --repeats calls. The script checks that both sides compute
the same thing: the PyTorch forward's log-probs of jaxsuite's sampled tokens against jaxsuite's sampler
log-probs, and the two first-update losses.

Floor (written down before measuring), P = parameters that take part in matmuls (all but the untied input
embedding), attention's T^2 terms ignored (small at these lengths):
  update   FLOPs ~ 3 * 2 * P * tokens (policy forward + backward) + 2 * P * tokens (reference forward)
  rollout  bytes ~ P * 4 per decode step (every weight read once per step, KV cache ignored), and
           FLOPs ~ 2 * P * rows * (prompt_len + new_tokens); the floor is the larger of the two times.
Peaks are --peak_tflops and --peak_gbps (defaults: a small CPU, 0.1 TFLOP/s f32 GEMM and 15 GB/s); the
script prints each side's achieved fraction of its floor (floor time / measured time).

  python benchmarks/rl_step.py --size tiny --repeats 2          # smoke run, seconds
  python benchmarks/rl_step.py --size small                     # ~10M params, B=4 prompts x n=4, 32 + 64 tokens
  python benchmarks/rl_step.py --size small --json rl_step.json --peak_tflops 0.1 --peak_gbps 15

Run it on an idle machine: both frameworks use every core, and a shared machine makes the ratios noise.
Ratios are anchor time / jaxsuite time (> 1 means jaxsuite is faster).
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile

import numpy as np

from lm_setup import machine, timeit

SIZES = {
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
    "small": dict(vocab_size=4096, hidden_size=256, intermediate_size=2304, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=64),
}
COMMON = dict(rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=4096, tie_word_embeddings=False,
              bos_token_id=None, eos_token_id=None, pad_token_id=0)
TEMPERATURE, TOP_P = 0.7, 0.9
LOSS = dict(clip_low=0.2, clip_high=0.2, kl_coef=1e-3, entropy_coef=1e-3, aggregation="token-mean",
            temperature=TEMPERATURE)
OPTIM = dict(lr=1e-6, warmup_steps=0, min_lr_ratio=1.0, steps=1000, weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-8,
             grad_clip=1.0)


class NoStopTokenizer:
    """What sample_responses needs when prompt ids are given: a stop id that is never sampled (rows run to
    max_new_tokens, as transformers does with eos_token_id=None) and a pad id."""
    eos_id = -1
    pad_id = 0
    bos_id = None

    def encode(self, text):
        raise NotImplementedError("prompt_ids are given")

    def decode(self, ids):
        return ""


def build_models(size: str, seed: int = 0):
    """(torch_model, jax_model, n_params, matmul_params): a randomised Qwen3, identical weights, float32."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from jaxsuite.hf import load_pretrained
    from jaxsuite.testing import randomize_torch_parameters

    torch.manual_seed(seed)
    cfg = Qwen3Config(**SIZES[size], **COMMON, attn_implementation="sdpa")
    tmodel = Qwen3ForCausalLM(cfg)
    randomize_torch_parameters(tmodel)      # every parameter random, as in the tests
    tmodel.generation_config.eos_token_id = None
    tmodel.generation_config.pad_token_id = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmodel.save_pretrained(tmp)
        jmodel = load_pretrained(tmp)
    n_params = sum(p.numel() for p in tmodel.parameters())
    embed = tmodel.get_input_embeddings().weight.numel()
    matmul_params = n_params if cfg.tie_word_embeddings else n_params - embed
    return tmodel.eval(), jmodel, n_params, matmul_params


def torch_policy_loss(model, ref, tb: dict):
    """The GRPO loss of jaxsuite.rl.policy.make_policy_loss, written in PyTorch (veRL's formulas)."""
    import torch

    def logprobs(m):
        logits = m(input_ids=tb["inputs"], position_ids=tb["positions"]).logits.float() / LOSS["temperature"]
        logp_all = torch.log_softmax(logits, dim=-1)
        return logp_all, logp_all.gather(-1, tb["targets"][..., None])[..., 0]

    logp_all, logp = logprobs(model)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    with torch.no_grad():
        _, ref_logp = logprobs(ref)
    ratio = torch.exp(torch.clamp(logp - tb["old_logprobs"], -20.0, 20.0))
    adv = tb["advantages"]
    pg = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1.0 - LOSS["clip_low"], 1.0 + LOSS["clip_high"]))
    d = torch.clamp(ref_logp - logp, -20.0, 20.0)
    kl = torch.clamp(torch.exp(d) - d - 1.0, -10.0, 10.0)
    per_token = pg + LOSS["kl_coef"] * kl - LOSS["entropy_coef"] * entropy
    mask = tb["loss_mask"]
    return (per_token * mask).sum() / mask.sum(), logp.detach()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--batch", type=int, default=4, help="prompts per rollout")
    ap.add_argument("--n", type=int, default=4, help="samples per prompt")
    ap.add_argument("--prompt_len", type=int, default=32)
    ap.add_argument("--new_tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak_tflops", type=float, default=0.1, help="assumed f32 matmul peak (TFLOP/s)")
    ap.add_argument("--peak_gbps", type=float, default=15.0, help="assumed memory bandwidth (GB/s)")
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    args = ap.parse_args()

    import jax
    import torch

    from jaxsuite.core import sharding as shd
    from jaxsuite.rl.objectives import group_advantages
    from jaxsuite.rl.policy import Policy, PolicyLossConfig
    from jaxsuite.rl.rollout import sample_responses

    tmodel, jmodel, n_params, p_mm = build_models(args.size)
    vocab = tmodel.config.vocab_size
    rng = np.random.default_rng(0)
    prompt_ids = rng.integers(1, vocab, (args.batch, args.prompt_len))
    rows = args.batch * args.n

    # --- 1. rollout ------------------------------------------------------------------------------------------
    tok = NoStopTokenizer()

    def jax_rollout():
        return sample_responses(jmodel, tok, [""] * args.batch, n=args.n, max_new_tokens=args.new_tokens,
                                temperature=TEMPERATURE, top_p=TOP_P, seed=0, prompt_ids=prompt_ids.tolist())

    tids = torch.from_numpy(np.repeat(prompt_ids, args.n, axis=0))          # prompt-major, as sample_responses

    def torch_rollout():
        with torch.inference_mode():
            out = tmodel.generate(tids, attention_mask=torch.ones_like(tids), do_sample=True,
                                  temperature=TEMPERATURE, top_p=TOP_P, top_k=0, max_new_tokens=args.new_tokens,
                                  min_new_tokens=args.new_tokens, eos_token_id=None, pad_token_id=0,
                                  return_dict_in_generate=True, output_logits=True)
            new = out.sequences[:, args.prompt_len:]
            logits = torch.stack(out.logits, dim=1).float() / TEMPERATURE
            logp = torch.log_softmax(logits, dim=-1).gather(-1, new[..., None])[..., 0]
        return new.numpy(), logp.numpy()

    roll = jax_rollout()                                                       # warm-up (compiles)
    t_new, t_logp = torch_rollout()
    jax_tokens = roll.num_tokens
    torch_tokens = int(t_new.size)          # no stop token: every generated token is real
    t_roll_jax = timeit(jax_rollout, args.repeats, warmup=1)
    t_roll_torch = timeit(torch_rollout, args.repeats, warmup=1)

    # --- 2. update -------------------------------------------------------------------------------------------
    rewards = rng.normal(size=rows)
    seq_len = args.prompt_len + args.new_tokens
    batch = roll.to_batch(group_advantages(rewards, roll.group_ids), seq_len=seq_len, pad_id=0)
    mesh = shd.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    policy = Policy(jmodel, optim=OPTIM, loss=PolicyLossConfig(**LOSS), mesh=mesh)
    batch["old_logprobs"], _ = policy.score(batch)
    update_tokens = int(batch["inputs"].size)

    tref = copy.deepcopy(tmodel).eval().requires_grad_(False)
    tpol = tmodel.train()
    decay = [p for name, p in tpol.named_parameters() if p.ndim >= 2 and "norm" not in name]
    no_decay = [p for name, p in tpol.named_parameters() if not (p.ndim >= 2 and "norm" not in name)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPTIM["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=OPTIM["lr"], betas=(OPTIM["b1"], OPTIM["b2"]), eps=OPTIM["eps"])
    tb = {k: torch.from_numpy(np.array(v)) for k, v in batch.items()}
    tb["inputs"], tb["targets"], tb["positions"] = (tb[k].long() for k in ("inputs", "targets", "positions"))

    # same weights: PyTorch's forward log-probs of jaxsuite's sampled tokens vs jaxsuite's sampler log-probs
    with torch.no_grad():
        _, t_fwd_logp = torch_policy_loss(tref, tref, tb)
    mask = batch["loss_mask"] > 0
    logp_diff = float(np.max(np.abs(t_fwd_logp.numpy()[mask] - np.concatenate(roll.logprobs))))

    def jax_update():
        return policy.update(batch)["loss"]            # device_get inside: blocks until the step is done

    def torch_update():
        opt.zero_grad(set_to_none=True)
        loss, _ = torch_policy_loss(tpol, tref, tb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(tpol.parameters()), OPTIM["grad_clip"])
        opt.step()
        return float(loss.detach())

    loss_jax, loss_torch = jax_update(), torch_update()                        # warm-up; both start equal
    t_upd_jax = timeit(jax_update, args.repeats, warmup=1)
    t_upd_torch = timeit(torch_update, args.repeats, warmup=1)

    # --- floors ----------------------------------------------------------------------------------------------
    peak_flops, peak_bytes = args.peak_tflops * 1e12, args.peak_gbps * 1e9
    upd_flops = 3 * 2 * p_mm * update_tokens + 2 * p_mm * update_tokens
    upd_floor = upd_flops / peak_flops
    roll_bytes = p_mm * 4 * args.new_tokens
    roll_flops = 2 * p_mm * rows * (args.prompt_len + args.new_tokens)
    roll_floor = max(roll_bytes / peak_bytes, roll_flops / peak_flops)

    print(f"machine: {machine()}; jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"model: Qwen3 '{args.size}' {n_params / 1e6:.2f}M params ({p_mm / 1e6:.2f}M in matmuls), float32; "
          f"{args.batch} prompts x n={args.n} = {rows} rows, prompt {args.prompt_len}, {args.new_tokens} new "
          f"tokens, T={TEMPERATURE}, top_p={TOP_P}")
    print(f"checks: |torch forward logp - jaxsuite sampler logp| max {logp_diff:.1e}; first-update loss "
          f"jaxsuite {loss_jax:.6f} torch {loss_torch:.6f}; mean sampler logp jaxsuite "
          f"{np.mean(np.concatenate(roll.logprobs)):.3f} transformers {t_logp.mean():.3f}")
    table = [
        ("rollout tokens/s", jax_tokens / t_roll_jax, torch_tokens / t_roll_torch, t_roll_torch / t_roll_jax),
        ("rollout s", t_roll_jax, t_roll_torch, t_roll_torch / t_roll_jax),
        (f"update s ({rows}x{batch['inputs'].shape[1]} tok)", t_upd_jax, t_upd_torch, t_upd_torch / t_upd_jax),
        ("rollout floor fraction", roll_floor / t_roll_jax, roll_floor / t_roll_torch, None),
        ("update floor fraction", upd_floor / t_upd_jax, upd_floor / t_upd_torch, None),
    ]
    print(f"\n| {'measurement':<28} | {'jaxsuite':>10} | {'anchor':>10} | {'ratio':>6} |")
    print(f"|{'-' * 30}|{'-' * 11}:|{'-' * 11}:|{'-' * 7}:|")
    for name, j, a, r in table:
        print(f"| {name:<28} | {j:10.4g} | {a:10.4g} | {'' if r is None else f'{r:5.2f}x':>6} |")
    print(f"\nfloors at {args.peak_tflops} TFLOP/s, {args.peak_gbps} GB/s: update {upd_flops / 1e9:.2f} GFLOP -> "
          f"{upd_floor * 1e3:.2f} ms; rollout {args.new_tokens} decode steps x {p_mm * 4 / 1e6:.1f} MB = "
          f"{roll_bytes / peak_bytes * 1e3:.2f} ms, {roll_flops / 1e9:.2f} GFLOP = "
          f"{roll_flops / peak_flops * 1e3:.2f} ms -> {roll_floor * 1e3:.2f} ms")
    print("ratio = anchor time / jaxsuite time (> 1 means jaxsuite is faster); anchor = transformers / PyTorch")

    if args.json:
        result = dict(
            args=vars(args), machine=machine(), jax=jax.__version__, backend=jax.default_backend(),
            torch=torch.__version__, torch_threads=torch.get_num_threads(), params=n_params, matmul_params=p_mm,
            rows=rows, update_shape=list(batch["inputs"].shape),
            checks=dict(logp_max_diff=logp_diff, first_loss_jaxsuite=loss_jax, first_loss_torch=loss_torch),
            rollout=dict(jaxsuite_s=t_roll_jax, anchor_s=t_roll_torch, jaxsuite_tokens=jax_tokens,
                         anchor_tokens=torch_tokens, jaxsuite_tok_s=jax_tokens / t_roll_jax,
                         anchor_tok_s=torch_tokens / t_roll_torch, ratio=t_roll_torch / t_roll_jax,
                         floor_s=roll_floor, floor_bytes=roll_bytes, floor_flops=roll_flops),
            update=dict(jaxsuite_s=t_upd_jax, anchor_s=t_upd_torch, ratio=t_upd_torch / t_upd_jax,
                        tokens=update_tokens, floor_s=upd_floor, floor_flops=upd_flops),
        )
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
