"""Notebook 07's footing on real models: word-level scores from each model's own log-probabilities,
fair charges for unknown words, generation-quality measures, adgen evaluate, the playground."""

import math

import numpy as np
import pandas as pd
import pytest
from helpers import LSTM_ADS

from adgen_utils import models as admodel
from adgen_utils.corpus import sequences
from adgen_utils.corpus.text import UNK_ID, tokenize
from adgen_utils.lstm import admodel as lstm_admodel
from adgen_utils.lstm import model as lstm
from adgen_utils.study import evaluation, products
from adgen_utils.study.footing import evaluate_ad_model, load_ad_model
from adgen_utils.transformer import admodel as transformer_admodel
from adgen_utils.transformer import pretrained


def test_spelling_model_is_a_probability_and_charges_unseen_characters():
    spelling = lstm_admodel.SpellingModel(["ab", "ba", "aab"])
    # Every string over {a, b} up to length 8: the probabilities sum to less than 1 (proper).
    total = 0.0
    for length in range(1, 9):
        for code in range(2**length):
            word = "".join("ab"[(code >> k) & 1] for k in range(length))
            total += math.exp(spelling.log_prob(word))
    assert 0.5 < total < 1.0
    assert spelling.log_prob("ab") > spelling.log_prob("abababab")
    assert spelling.log_prob("aé") < spelling.log_prob("aa") - math.log(lstm_admodel.CODE_POINTS) + 1


def test_lstm_scores_match_its_own_metrics_and_charge_unknown_words(lstm_folder):
    model = load_ad_model(lstm_folder, name="lstm")
    assert isinstance(model, lstm_admodel.LSTMAdModel)
    known = ["Sony TV Remote Black", "Garmin Watch Band White", "Apple Charger Cable Blue"]
    scores = model.score(known)
    arrays, _ = sequences.encode_ads(known, model.vocabulary)
    reference = lstm.evaluate_token_arrays(model.model, arrays)
    summary = admodel.summarize_scores(scores)
    # With no unknown word the footing is the model's own next-token metrics (with <eos>).
    assert summary["predictions"] == reference["predictions"] == sum(len(tokenize(a)) + 1 for a in known)
    assert summary["per_word_perplexity"] == pytest.approx(reference["perplexity"], rel=1e-4)
    assert summary["top1_accuracy"] == pytest.approx(reference["accuracy"])
    assert summary["oov_share"] == 0

    # An unknown word costs P(<unk> | context) x P(spelling) and is never a hit.
    unknown = "Sony TV Remote Zqxwv"
    row = model.score([unknown]).iloc[0]
    ids = model.vocabulary.encode(tokenize(unknown))
    assert ids[-1] == UNK_ID and row["unknown_words"] == 1
    inputs = np.array([[2, *ids]], dtype=np.int32)
    logits = np.asarray(model.model(inputs, training=False))[0].astype(np.float64)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    own = sum(log_softmax[k, t] for k, t in enumerate([*ids, 3]))
    assert row["log_prob"] == pytest.approx(own + model.spelling.log_prob("Zqxwv"), rel=1e-4)
    assert row["log_prob"] < own  # charged more than the bare <unk> id
    with pytest.raises(ValueError, match="empty"):
        model.score(["Sony", "  "])


def test_lstm_scores_are_the_same_in_chunks_of_any_size(lstm_folder):
    model = load_ad_model(lstm_folder, name="lstm")
    ads = [
        "Sony TV Remote Black",
        "Garmin Watch Band White",
        "Apple Charger Cable Blue",
        "Fitbit Zqxwv Band",
        "Apple Watch Band Black, Sony TV Remote White",
        "Garmin",
    ]
    whole = model.score(ads, logits_budget_gib=100.0)
    one_by_one = model.score(ads, logits_budget_gib=1e-9)  # one ad per chunk
    pairs = model.score(ads, batch_size=2)
    assert whole["top1"].sum() > 0 and whole["top5"].sum() > whole["top1"].sum()  # hits and misses to get right
    for other in (one_by_one, pairs):
        columns = [c for c in admodel.SCORE_COLUMNS if c != "log_prob"]
        assert other[columns].equals(whole[columns])
        np.testing.assert_allclose(other["log_prob"], whole["log_prob"], rtol=1e-5)


def test_word_hits_follow_the_models_greedy_word_completions():
    text = "Sony TV, Band"
    spans = [(0, 4), (4, 7), (7, 8), (8, 11), (11, 13)]  # "Sony" " TV" "," " Ba" "nd"
    continues = np.zeros(10, dtype=bool)
    continues[7] = True  # token 7 would extend a word ("s")

    def scores(top1, top5, predicted):
        return pretrained.TokenScores(np.zeros(6), np.array(top1), np.array(top5), np.array(predicted), spans)

    # Every token first choice, closing tokens after each word: 4 words + the end, all hits.
    assert transformer_admodel.word_hits(text, scores([1] * 6, [1] * 6, [0] * 6), continues) == (5, 5, 5)
    # " Ba" only in the top 5: "Band" is a top-5 hit, not a top-1 hit.
    assert transformer_admodel.word_hits(text, scores([1, 1, 1, 0, 1, 1], [1] * 6, [0] * 6), continues) == (5, 4, 5)
    # "nd" not the first choice: the greedy completion of " Ba" is another word, no hit at all.
    assert transformer_admodel.word_hits(text, scores([1, 1, 1, 1, 0, 1], [1] * 6, [0] * 6), continues) == (5, 4, 4)
    # After " TV" the model's first choice extends the word ("TVs"): "TV" is not predicted.
    assert transformer_admodel.word_hits(text, scores([1] * 6, [1] * 6, [0, 0, 7, 0, 0, 0]), continues) == (5, 4, 4)


def test_transformer_scores_are_its_own_log_probabilities(tiny_folder, embedded_ads):
    import torch

    model = load_ad_model(tiny_folder, name="tiny")
    ads = ["Apple Watch Band 42mm, Black", "Sony 55 inch 4K TV"]
    scores = model.score(ads)
    tokenizer, net = model.tokenizer, model.model
    for ad, row in zip(ads, scores.itertuples()):
        ids = tokenizer(tokenizer.eos_token + ad + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            loss = net(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
        assert row.log_prob == pytest.approx(-float(loss) * (len(ids) - 1), rel=1e-4)
        assert row.words == len(tokenize(ad)) + 1 and row.model_tokens == len(ids) - 1
    summary = admodel.summarize_scores(scores)
    assert summary["oov_share"] == 0 and 0 <= summary["top1_accuracy"] <= summary["top5_accuracy"] <= 1
    assert summary["bits_per_char"] == pytest.approx(-scores["log_prob"].sum() / math.log(2) / sum(map(len, ads)))

    train = embedded_ads[embedded_ads["split"] == "train"][["ad", "category"]]
    few = load_ad_model(tiny_folder, name="tiny 2-shot", shots=2, examples=train)
    contexts = few.contexts(ads)
    assert all(c.count("\n") == 3 and c.startswith("Amazon product ad titles:") for c in contexts)
    assert not any(ad in c for ad, c in zip(ads, contexts))
    with pytest.raises(ValueError, match="examples"):
        load_ad_model(tiny_folder, shots=2)

    # The few-shot view of the zero-shot model loaded above: the same module, not a second copy.
    view = transformer_admodel.with_shots(model, 2, train, name="tiny 2-shot view")
    assert view.model is model.model and view.tokenizer is model.tokenizer
    assert view.name == "tiny 2-shot view" and model.shots == 0 and model.name == "tiny"
    assert view.contexts(ads) == contexts
    pd.testing.assert_frame_equal(view.score(ads), few.score(ads))
    pd.testing.assert_frame_equal(model.score(ads), scores)  # the zero-shot model is unchanged
    with pytest.raises(ValueError, match="examples"):
        transformer_admodel.with_shots(model, 2, None)


def test_brand_lexicon_flags_brands_never_named_together():
    training = (
        ["Apple Watch Series 3 GPS 42mm"] * 3
        + ["Fitbit Charge 3 Fitness Tracker"] * 3
        + ["Fintie Band for Apple Watch 44mm"] * 3
        + ["Fintie Band for Fitbit Charge 3"] * 2
        + ["Remote Control for Sony TV"] * 3
        + ["Sony TV Remote Control RMT-TX100U"] * 15
    )
    lexicon = products.BrandLexicon(training)
    assert {"apple", "fitbit", "fintie"} <= lexicon.brands
    assert "remote" not in lexicon.brands  # opens 3 ads but is mostly a product word inside ads
    assert lexicon.conflicts("Apple", "Apple Watch Band for Fitbit Charge") == ["fitbit"]
    assert lexicon.conflicts("Fintie", "Fintie Band for Apple Watch") == []
    assert lexicon.conflicts("Zorblax", "Zorblax Band for Apple Watch") is None  # unknown brand: unchecked


def test_generation_measures_on_known_cases():
    assert evaluation.distinct_n(["a b a b"], 1) == 0.5
    assert evaluation.distinct_n(["a b c", "a b d"], 2) == 0.75
    assert evaluation.self_bleu(["Sony TV Remote Black"] * 3) == pytest.approx(100)
    assert evaluation.self_bleu(["Sony TV Remote Black", "Garmin Watch Band White", "Apple Charger Cable"]) < 10
    assert products.brand_and_product("Fintie Band for Apple Watch 44mm") == ("Fintie", "Band")
    assert products.brand_and_product("New 2020 Sony Bravia TV, 55 inch") == ("Sony", "TV")
    assert products.brand_and_product("123") is None

    lexicon = products.BrandLexicon(LSTM_ADS)
    prompts = pd.DataFrame(
        {
            "prompt": ["Apple Watch", "Sony TV"],
            "brand": ["Apple", "Sony"],
            "ad": ["Apple Watch Band Black", "Sony TV Remote White"],
        }
    )
    quality = evaluation.generation_quality(
        {
            "copier": ["Apple Watch Band Black", "Sony TV Remote White"],
            "looper": ["Apple Watch Watch Watch Watch", admodel.Refusal("empty prompt")],
        },
        prompts,
        LSTM_ADS,
        lexicon,
    )
    assert quality.loc["copier", "novelty"] == 0 and quality.loc["looper", "novelty"] == 1
    assert quality.loc["looper", "refused"] == 1 and quality.loc["looper", "ads"] == 1
    assert quality.loc["looper", "repetition"] == pytest.approx(0.6)
    assert "real test ads" in quality.index


def test_side_by_side_generation_and_the_playground(lstm_folder, tiny_folder):
    models = {m.name: m for m in [load_ad_model(lstm_folder, name="lstm"), load_ad_model(tiny_folder, name="tiny")]}
    decoding = admodel.Decoding(max_new_tokens=6)
    table = evaluation.ads_side_by_side(list(models.values()), ["Sony TV", "Qwzx Vbnm"], decoding)
    assert table.loc["Sony TV", "lstm"].startswith("Sony TV")
    refused = table.loc["Qwzx Vbnm", "lstm"]
    assert isinstance(refused, admodel.Refusal) and refused.reason.startswith("none of the prompt's words")
    assert str(refused) in table.to_string() and str(refused) in table.to_csv()  # how tables show it
    assert table.loc["Qwzx Vbnm", "tiny"].startswith("Qwzx Vbnm")
    with pytest.raises(ValueError, match="beam"):
        models["lstm"].generate(["Sony"], admodel.Decoding(num_beams=2))

    headless = evaluation.playground_table(
        models, ["lstm", "tiny"], "Apple Watch", evaluation.playground_decoding(max_new_tokens=5), samples=2
    )
    assert headless.shape == (2, 2) and headless.map(lambda ad: ad.startswith("Apple Watch")).all().all()
    with pytest.raises(ValueError, match="unknown model"):
        evaluation.playground_table(models, ["gpt-7"], "Apple", decoding)

    panel = evaluation.playground(models, prompt="Garmin Watch")
    controls, output = panel.children
    button = controls.children[-1]
    assert panel.last_table is None
    button.click()  # what pressing Generate does
    assert list(panel.last_table.columns) == ["lstm", "tiny"]
    assert panel.last_table.map(lambda ad: ad.startswith("Garmin Watch")).all().all()
    controls.children[0].value = ()  # no model chosen: a message, not a crash
    button.click()
    assert panel.last_table is None


def test_self_bleu_without_sacrebleu_says_which_extra_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "sacrebleu.metrics", None)
    with pytest.raises(ModuleNotFoundError, match=r"\[evaluation\]"):
        evaluation.self_bleu(["Sony TV Remote", "Garmin Watch Band"])


def test_refusals_are_values_in_generate_output_and_the_model_never_sees_them(lstm_folder, tiny_folder):
    lstm_model = load_ad_model(lstm_folder, name="lstm")
    tiny = load_ad_model(tiny_folder, name="tiny")
    short = admodel.Decoding(max_new_tokens=4)
    lstm_ads = lstm_model.generate(["Sony TV", "Qwzx Vbnm", "  ", "Apple Zqxw"], short)
    assert lstm_ads[0].startswith("Sony TV") and lstm_ads[3].startswith("Apple Zqxw")  # one known word suffices
    assert [type(ad) for ad in lstm_ads] == [admodel.WrittenAd, admodel.Refusal, admodel.Refusal, admodel.WrittenAd]
    assert all(isinstance(ad, str) and ad.complete in (True, False) for ad in admodel.ads_only(lstm_ads))
    assert lstm_ads[1] == lstm_model.refusal("Qwzx Vbnm") and lstm_ads[2].reason.startswith("empty prompt")
    assert admodel.ads_only(lstm_ads) == [lstm_ads[0], lstm_ads[3]]
    tiny_ads = tiny.generate(["Sony TV", "", "Sony\nTV"], short)
    assert tiny_ads[0].startswith("Sony TV")
    assert tiny_ads[1:] == [admodel.Refusal("empty prompt"), tiny.refusal("Sony\nTV")]
    assert "line break" in tiny_ads[2].reason

    # Every prompt refused: the model is not run at all (a model that cannot run shows it).
    for model in (lstm_model, tiny):
        runner = model.model
        model.model = None
        try:
            assert model.generate(["", " "], short) == [model.refusal(""), model.refusal(" ")]
        finally:
            model.model = runner


def test_an_lstm_writes_the_same_greedy_ads_batched_and_one_at_a_time(lstm_folder):
    model = load_ad_model(lstm_folder, name="lstm")
    prompts = ["Sony", "Garmin Watch", "Apple Charger Cable", "Fitbit", "Qwzx", "Sony TV Remote"]  # 3 to 5 words
    greedy = admodel.Decoding(max_new_tokens=6)
    one_at_a_time = model.generate(prompts, greedy, batch_size=1)
    assert isinstance(one_at_a_time[4], admodel.Refusal)
    for batch_size in (2, 4, 16):
        assert model.generate(prompts, greedy, batch_size=batch_size) == one_at_a_time
    # Sampling: prompt i draws with seed + i, so the same seed gives the same ads.
    sampled = admodel.Decoding(do_sample=True, temperature=1.5, max_new_tokens=6)
    assert model.generate(prompts, sampled, seed=3, batch_size=4) == model.generate(
        prompts, sampled, seed=3, batch_size=4
    )


def test_a_model_that_reads_no_category_refuses_categories(lstm_folder, tiny_folder, embedded_ads):
    lstm_model = load_ad_model(lstm_folder, name="lstm")
    zero_shot = load_ad_model(tiny_folder, name="tiny")
    train = embedded_ads[embedded_ads["split"] == "train"][["ad", "category"]]
    few_shot = transformer_admodel.with_shots(zero_shot, 1, train)
    category = str(train["category"].iloc[0])
    assert not lstm_model.describe().reads_category and not zero_shot.describe().reads_category
    assert few_shot.describe().reads_category and few_shot.describe().setting == admodel.few_shot(1)
    for model in (lstm_model, zero_shot):
        with pytest.raises(ValueError, match="reads no category"):
            model.generate(["Sony TV"], admodel.Decoding(max_new_tokens=3), categories=[category])
        with pytest.raises(ValueError, match="reads no category"):
            model.score(["Sony TV Remote"], categories=[category])
        assert admodel.categories_for(model, [category]) is None
    assert admodel.categories_for(few_shot, [category]) == [category]
    # The side-by-side table and the footing pass categories only to the models that read them.
    table = evaluation.ads_side_by_side(
        [lstm_model, zero_shot, few_shot], ["Sony TV"], admodel.Decoding(max_new_tokens=3), categories=[category]
    )
    assert table.shape == (1, 3)
    test = pd.DataFrame({"ad": ["Sony TV Remote"], "category": [category]})
    scored = [evaluate_ad_model(model, test) for model in (lstm_model, few_shot)]
    assert [row["reads_category"] for row in scored] == [False, True] and scored[0]["setting"] == admodel.FROM_SCRATCH
