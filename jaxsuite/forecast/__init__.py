"""Probabilistic forecasting with multi-expert label distribution learning (arXiv 2602.04678)."""
