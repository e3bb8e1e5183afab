"""LatentChem (arXiv 2602.07075): latent reasoning heads on any jaxsuite LM, with verifiable chemistry tasks.

  head             the latent loop (projector, adaptive stopping, KV-cache reuse), molecule adapter, updater
  mol_encoder      a small SMILES transformer encoder pre-trained here (masked tokens); precomputed features
  chem_molecules   RDKit molecule generator and functional groups
  chem_tasks       understanding / editing / optimisation tasks with RDKit ground truth and rationales
"""
