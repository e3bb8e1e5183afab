"""GLA: a per-channel log-decay per token and head.

reference.py  token-by-token recurrence (the oracle) and the one-token step used for decoding
chunk_xla.py  chunkwise-parallel form in jnp (CPU default, fallback)
pallas.py     Pallas forward/backward kernel bodies and their custom_vjp op
api.py        public ops: validation, dispatch, layouts
"""
