"""The agent runtime's demonstration wing: a tiny model taught to answer lookup questions with a search tool
over a generated fact corpus (facts: the fact base; job: SFT then GRPO on the multi-turn rollout core)."""
