"""HALO: distilling a Qwen3 teacher into a HypeNet RNN-attention hybrid (arXiv 2601.22156). Work in progress
(issue 4): layer selection is here; the model lives in jaxsuite.models, the training stages are to come."""
