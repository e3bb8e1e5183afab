"""EvoOpt-LLM (arXiv 2602.01082): natural language to solver-executable MILP, constraint injection, and
learned variable pruning, with the execution check the optimisation-modelling benchmarks use.

  model       the structured MILP form; HiGHS and SCIP solves; LP files written and read
  families    eight industrial problem families with statements in words and solved optima
  programs    a model written as a solver program in cvxpy, PuLP, SCIP, HiGHS or SciPy
  checker     the execution check: a program run in the sandbox, its optimum read and judged
  benchmarks  readers for OptiBench, MAMO and NL4Opt (shared/data/optbench)
  injection   a new business rule into an existing model, verified by solving
  gnn         the predict-and-search GNN (bipartite graph, message passing with segment_sum)
  pruning     its training on solution pools, fix-and-solve and trust-region search, pooled P/R/F1
"""
