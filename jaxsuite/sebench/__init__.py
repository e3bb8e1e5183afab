"""SE-Bench (arXiv 2602.04811): does a model internalise a genuinely new library?

NumPy becomes `zwc`, a package with random function names whose docs never say numpy; tasks are trivial with
those docs and impossible without them; the training regimes compare what ends up in the weights.

  names      the released renaming algorithm (name for name equal to the released zwc package)
  package    writes the package: renamed functions, the ZWCArray type, the seal on the library
  docs       the library's docstrings rewritten by rule, and the api_doc.jsonl format
  tasks      generated tasks with ground truth, and the official task format
  evaluate   the paper's evaluator: sandboxed harness, AST checks, normaliser, six outcome categories
"""
