"""Writes notebooks/*.ipynb from the cell lists below (run: python notebooks/build_notebooks.py).

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

**Colab:** install first with `!pip install -q "jaxsuite @ git+<this repository's URL>"` (add `[test]` to also
get transformers for the parity check at the end). Set `MODEL` to a hub id such as `Qwen/Qwen3-0.6B` or to
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

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    nb = new_notebook(cells=QUICKSTART, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}})
    nbformat.write(nb, os.path.join(here, "01_quickstart.ipynb"))
    print("wrote notebooks/01_quickstart.ipynb")
