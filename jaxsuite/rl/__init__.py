"""The RL core every policy-gradient system in jaxsuite shares, and the systems built on it.

  objectives     advantages (GRPO, REINFORCE, EMA baseline), clipped surrogate, k3 KL, entropy, aggregation
  policy         Policy: sharded train state + frozen reference + jitted scoring and update
  rollout        sampling n responses per prompt through jaxsuite.generate; RL batch layout
  estimators     pass@k and mean@k over k sampled attempts
  rewards        label-free rewards: majority vote, self-consistency, R-Zero's challenger reward, RENT
  math_env       verifiable math: problem generator, \\boxed{} extraction, sympy equivalence, dataset readers
  text_similarity  BLEU and BLEU clustering (R-Zero's repetition penalty)
  cpmobius/      CPMobius coach-player data-free RL and the R-Zero / RENT baselines
"""
