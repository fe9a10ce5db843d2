"""Sampling with a generator per row: generate()'s warpers, and ads that depend on their seed alone."""

import pytest
import torch
from transformers import GenerationConfig, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from adgen_utils import models
from adgen_utils.transformer import pretrained
from adgen_utils.transformer.sampling import SeededSampling, sampling_warpers


def test_the_warpers_are_generates_own_over_its_defaults_and_the_models_config():
    arguments = models.DECODINGS[models.DEFAULT_DECODING].generate_arguments()
    warpers = sampling_warpers(GenerationConfig(), arguments)
    assert [type(w) for w in warpers] == [TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper]
    assert (warpers[0].temperature, warpers[1].top_k, warpers[2].top_p) == (0.8, 50, 0.95)
    # Unset, top_k is generate()'s default of 50; the model's saved config comes before that default.
    assert [w.top_k for w in sampling_warpers(GenerationConfig(), {"do_sample": True})] == [50]
    saved = GenerationConfig(top_k=0, temperature=0.6)
    assert [type(w) for w in sampling_warpers(saved, {"do_sample": True})] == [TemperatureLogitsWarper]
    with pytest.raises(ValueError, match="min_p"):
        sampling_warpers(GenerationConfig(min_p=0.1), {"do_sample": True})


def test_each_row_draws_from_the_warped_distribution_with_its_own_generator():
    scores = torch.log(torch.tensor([[0.6, 0.3, 0.1, 1e-9]] * 4000))
    sampler = SeededSampling(range(4000), sampling_warpers(GenerationConfig(), {"top_p": 0.85}), "cpu")
    drawn = sampler(None, scores.clone()).argmax(dim=1)
    shares = torch.bincount(drawn, minlength=4) / len(drawn)
    # top-p 0.85 keeps 0.6 and 0.3 (renormalised to 2/3 and 1/3); 0.1 and the tail are cut.
    assert abs(shares[0] - 2 / 3) < 0.03 and abs(shares[1] - 1 / 3) < 0.03 and shares[2:].sum() == 0
    only = sampler(None, scores.clone())
    assert ((only == 0).sum(dim=1) == 1).all() and torch.isinf(only).sum() == 4000 * 3
    # The same seed draws the same token, whatever the other rows hold.
    one_row = SeededSampling([7], sampling_warpers(GenerationConfig(), {}), "cpu")
    alone = one_row(None, scores[:1].clone())
    mixed = SeededSampling([3, 7], sampling_warpers(GenerationConfig(), {}), "cpu")(
        None, torch.stack([torch.zeros(4), scores[0]])
    )
    assert torch.equal(alone[0], mixed[1])
    with pytest.raises(ValueError, match="2 rows but 1 generators"):
        one_row(None, scores[:2].clone())


def test_a_sampled_ad_depends_on_its_seed_not_its_batch(tiny_folder):
    model, tokenizer = pretrained.load_causal_lm(tiny_folder)
    sampled = models.Decoding(**{**models.DECODINGS[models.DEFAULT_DECODING].__dict__, "max_new_tokens": 12})
    prompt = "Apple Watch Band"
    batch = pretrained.generate_ads(model, tokenizer, [prompt] * 4, sampled, batch_size=4, seed=[11, 12, 13, 14])
    alone = pretrained.generate_ads(model, tokenizer, [prompt], sampled, seed=[13])
    reordered = pretrained.generate_ads(model, tokenizer, [prompt] * 3, sampled, batch_size=2, seed=[14, 13, 11])
    assert alone[0] == batch[2] and reordered == [batch[3], batch[2], batch[0]]
    assert len(set(batch)) > 1  # the seeds differ, and so do the ads
    # Sampling with keywords: a forced row still draws, so its seed's stream stays its own.
    keywords = [("44mm",), ()]
    with_kw = pretrained.generate_ads(model, tokenizer, [prompt] * 2, sampled, seed=[13, 14], keywords=keywords)
    assert with_kw[1] == batch[3] and "44mm" in with_kw[0]
    # Beam search that samples draws from torch's one generator: a product's 62-bit seed still seeds it.
    beams = models.Decoding(do_sample=True, num_beams=2, max_new_tokens=4)
    assert pretrained.generate_ads(model, tokenizer, [prompt], beams, seed=[2**61 + 5])[0].startswith(prompt)
