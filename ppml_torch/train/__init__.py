"""Training torch models under MPC: ``fit``/``predict``, torch optimizers and losses mapped to JAX."""
