"""HALO: distilling a Qwen3 teacher into a HypeNet RNN-attention hybrid (arXiv 2601.22156).

transfer.py (stage 0), stages.py (stages 1-3 as jobs), layer_selection.py (which layers stay attention),
passkey.py and evaluation.py (long-context evaluation), recipes.py (the paper's settings as configs) and
pipeline.py (everything in order: the main job of `python -m jaxsuite.launch`). The model is
jaxsuite.models.CausalLM."""
