"""Tiered data management L0-L4 (arXiv 2602.09003; UltraData-Math, Ultra-FineWeb) on datatrove, with jaxsuite models
scoring and refining the data, then tier-aware training and decay verification.

  corpus      the embedded L0 corpus: pydoc pages and generated pages with work for every tier
  cleaning    L0 -> L1: extraction with fallbacks, the UltraData L1 rules, language id (datatrove steps)
  pipeline    the datatrove stages (exact and MinHash dedup), executors (local, Slurm, Ray), merged stats
  quality     L2: the LM judge's 0-5 labels, the hashed n-gram classifier, threshold and P/R/F1, the scoring step
  refine      L3: refinement prompts, demonstrations, the fact check, provenance
  knowledge   L4: verification against a source sentence, dedup, export with a BM25 index
  training    tiered vs same-token mixed training, the decay verification, held-out metrics
  job         `run(config, workdir)` (configs/tiers_tiny.py)
"""
