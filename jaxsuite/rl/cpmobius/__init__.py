"""CPMobius (arXiv 2602.02979): coach-player data-free RL, with R-Zero and RENT on the same core."""
