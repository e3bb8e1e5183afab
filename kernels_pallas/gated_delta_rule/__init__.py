"""Gated delta rule (Gated DeltaNet): reference.py, chunk_xla.py (WY form), pallas.py, api.py."""
