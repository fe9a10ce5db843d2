"""Sampling with one random generator per row, for transformers' ``generate``.

``generate`` draws every row of a batch from torch's one global generator, so a row's tokens depend
on its batch-mates, the batch size and every call before it. :class:`SeededSampling` draws each row
from a generator of its own, seeded by the caller (per product in a catalog): a product's draws no
longer depend on its batch-mates, and the same batches give the same ads in one process or on
Spark (:class:`~adgen_utils.apps.catalog.CatalogJob`). It is the last logits processor of a
``generate`` call made with ``do_sample=False``: it warps the scores exactly as ``generate`` would
(temperature, then top-k, then top-p), draws one token per row, and leaves only that token
possible, so ``generate``'s greedy step takes it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# Warpers generate() knows and this sampler does not apply: a model's saved generation config setting
# one would be ignored silently, so it is refused instead.
UNSUPPORTED = {"top_h": None, "min_p": None, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


def sampling_warpers(generation_config, arguments: dict) -> LogitsProcessorList:
    """The warpers ``generate`` would apply for ``arguments`` (a ``Decoding``'s ``generate_arguments``)
    over the model's own ``generation_config``, in ``generate``'s order."""
    # generate()'s order: its global defaults (top_k 50 among them), the model's config, the call's arguments.
    defaults = GenerationConfig._get_default_generation_params()
    saved = {key: value for key, value in generation_config.to_dict().items() if value is not None}
    settings = {**defaults, **saved, **arguments}
    unsupported = {k: settings.get(k) for k, unset in UNSUPPORTED.items() if settings.get(k) not in (None, unset)}
    if unsupported:
        raise ValueError(f"the model's generation config sets {unsupported}: only temperature, top_k and top_p sample")
    temperature, top_k, top_p = settings.get("temperature"), settings.get("top_k"), settings.get("top_p")
    warpers = LogitsProcessorList()
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k is not None and top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return warpers


class SeededSampling(LogitsProcessor):
    """Row ``i`` draws its next token with its own generator, seeded ``seeds[i]``; every other token
    of the row becomes impossible. A row forced to one token (a keyword) still draws, so each row's
    generator advances once per step whatever the other rows do."""

    def __init__(self, seeds: Sequence[int], warpers: LogitsProcessorList, device):
        self.warpers = warpers
        self.generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{scores.shape[0]} rows but {len(self.generators)} generators")
        probs = torch.softmax(self.warpers(input_ids, scores), dim=-1)
        drawn = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators)])
        only = torch.full_like(scores, float("-inf"))
        return only.scatter_(1, drawn[:, None], 0.0)
