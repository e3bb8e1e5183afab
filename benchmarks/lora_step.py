"""A LoRA training step against a full fine-tuning step on the same model, in jaxsuite and in PyTorch + peft, side
by side in one process: seconds per step, and the memory the step keeps (parameters + optimizer state) and
allocates (XLA's temporaries, from the compiled step's memory_analysis).

  jaxsuite full   make_train_step, AdamW over every weight
  jaxsuite LoRA   apply_lora(rank r on q/k/v/o/gate/up/down) and trainable=is_lora_path: the base frozen (no
                  update, no Adam moments), only the adapters train
  torch full      the same Qwen3 in transformers, torch.optim.AdamW over every weight
  torch LoRA      peft.get_peft_model(LoraConfig(r, same targets)), AdamW over the adapters (the anchor)

Floor (written down before measuring), P = matmul parameters, N = tokens per step: a full step is ~6 P N FLOPs
(forward 2PN, backward 4PN: activation and weight gradients); a LoRA step skips the base's weight gradients,
~4 P N, so its floor is 2/3 of the full step's. Memory: full fine-tuning keeps 12 bytes per parameter (float32
weights and two moments); LoRA keeps 4 bytes per base parameter (jaxsuite's train state holds float32 master
weights, frozen ones too) plus 12 per adapter parameter.

  python benchmarks/lora_step.py --size tiny --repeats 2     # smoke run
  python benchmarks/lora_step.py --size small                # the figures in RESULTS.md

Run it on an idle machine. Ratios are anchor time / jaxsuite time (> 1: jaxsuite faster).
"""
from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np

from lm_setup import machine, timeit

SIZES = {
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
    "small": dict(vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=4, head_dim=64),
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
OPTIM = dict(lr=1e-4, warmup_steps=0, steps=1000, weight_decay=0.0, grad_clip=1.0, b2=0.999)


def _nbytes(tree) -> int:
    import jax
    return int(sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, "nbytes")))


def jax_step(folder: str, batch: dict, rank: int | None, repeats: int) -> dict:
    import jax
    from jaxsuite import hf
    from jaxsuite.core import sharding as shd
    from jaxsuite.core import train as tr
    from jaxsuite.models import lora
    model = hf.load_pretrained(folder)
    trainable = None
    if rank:
        lora.apply_lora(model, lora.LoraConfig(rank=rank, alpha=2 * rank, targets=TARGETS))
        trainable = lora.is_lora_path
    mesh = shd.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    optimizer = tr.make_optimizer(OPTIM, trainable=trainable)
    graphdef, state, shardings = tr.create_train_state(model, optimizer, mesh)
    step = tr.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings, trainable=trainable)
    compiled = step.lower(state, batch).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    holder = {"state": state}

    def one():
        holder["state"], metrics = compiled(holder["state"], batch)
        jax.block_until_ready(metrics["loss"])
    seconds = timeit(one, repeats, warmup=2)
    return {"seconds": seconds, "state_bytes": _nbytes(holder["state"].params) + _nbytes(holder["state"].opt_state),
            "temp_bytes": int(temp), "gflop": compiled.cost_analysis()["flops"] / 1e9}


def torch_step(model, batch: dict, rank: int | None, repeats: int) -> dict:
    import copy
    import torch
    model = copy.deepcopy(model).train()
    if rank:
        import peft
        model = peft.get_peft_model(model, peft.LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(TARGETS),
                                                           lora_dropout=0.0))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
    inputs, targets = torch.as_tensor(batch["inputs"]).long(), torch.as_tensor(batch["targets"]).long()

    def one():
        logits = model(inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    seconds = timeit(one, repeats, warmup=2)
    state = sum(p.numel() * 4 for p in model.parameters()) + sum(
        t.numel() * 4 for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.ndim > 0)
    return {"seconds": seconds, "state_bytes": int(state)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import torch
    import transformers
    from jaxsuite.testing import randomize_torch_parameters
    config = transformers.Qwen3Config(**SIZES[args.size], rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False,
                                      max_position_embeddings=4096, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize_torch_parameters(model)
    ids = np.random.default_rng(0).integers(0, config.vocab_size, (args.batch, args.seq + 1)).astype(np.int32)
    batch = {"inputs": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones((args.batch, args.seq), np.float32)}
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        rows = {"jaxsuite full": jax_step(folder, batch, None, args.repeats),
                "jaxsuite LoRA": jax_step(folder, batch, args.rank, args.repeats)}
    rows["torch full"] = torch_step(model, batch, None, args.repeats)
    rows["torch+peft LoRA"] = torch_step(model, batch, args.rank, args.repeats)

    print(f"{machine()}; Qwen3 {args.size}: {params / 1e6:.1f}M parameters, batch {args.batch} x {args.seq}, "
          f"LoRA rank {args.rank} on {', '.join(TARGETS)}, float32")
    print("| step | s/step | kept state MiB | XLA temporaries MiB | XLA GFLOP |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        temp = f"{r['temp_bytes'] / 2**20:.1f}" if "temp_bytes" in r else "-"
        gflop = f"{r['gflop']:.1f}" if "gflop" in r else "-"
        print(f"| {name} | {r['seconds']:.3f} | {r['state_bytes'] / 2**20:.1f} | {temp} | {gflop} |")
    j, t = rows["jaxsuite LoRA"], rows["torch+peft LoRA"]
    print(f"LoRA / full step time: jaxsuite {j['seconds'] / rows['jaxsuite full']['seconds']:.2f} "
          f"(floor ~0.67), torch {t['seconds'] / rows['torch full']['seconds']:.2f}; "
          f"anchor ratio (torch+peft / jaxsuite, LoRA step): {t['seconds'] / j['seconds']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "params": params, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
