"""The LSTM plumbing on real tiny corpora and real Keras models trained the way the lessons train them:
exact losses, the callbacks, reloading instead of retraining, resume after a kill, metrics, generation."""

import json
import math
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import run_to_end, run_until
from lesson import lesson_callbacks, lesson_model

from adgen_utils import layout
from adgen_utils.corpus import sequences
from adgen_utils.corpus.facts import missing_keywords
from adgen_utils.corpus.text import BOS_ID, PAD_ID, Vocabulary, tokenize
from adgen_utils.lstm import generation as lstm_generation
from adgen_utils.lstm import model as lstm
from adgen_utils.lstm import training as lstm_training
from adgen_utils.lstm.admodel import LSTMAdModel
from adgen_utils.models import CURVE_COLUMNS, summarize_scores

BRANDS = ["Apple", "Sony", "Fitbit", "Garmin", "Samsung"]
PRODUCTS = ["Watch Band", "TV Remote", "Charger Cable", "Screen Protector"]
COLOURS = ["Black", "White", "Blue"]
ADS = [f"{b} {p} {c}" for b in BRANDS for p in PRODUCTS for c in COLOURS]  # 60 ads, a learnable grammar


@pytest.fixture(scope="module")
def corpus():
    vocabulary = Vocabulary.build((tokenize(a) for a in ADS), min_count=1)
    train, _ = sequences.encode_ads(ADS * 3, vocabulary)
    validation, _ = sequences.encode_ads(ADS[::4], vocabulary)
    return vocabulary, train, validation


@pytest.mark.parametrize("first", ["one_hot", "embedding"])
def test_the_lessons_models_map_ids_to_logits_and_reload_with_their_layers(first, corpus, tmp_path):
    vocabulary, train, _ = corpus
    model = lesson_model(first, len(vocabulary))
    ids = np.array([[BOS_ID, 4, 5, PAD_ID]], dtype=np.int32)
    logits = model(ids).numpy()
    assert logits.shape == (1, 4, len(vocabulary)) and logits.dtype == np.float32
    lstm_training.save_trained(model, vocabulary, tmp_path)
    again, words = lstm.load_trained(tmp_path)
    np.testing.assert_allclose(again(ids).numpy(), logits, rtol=1e-5, atol=1e-6)
    assert words.tokens == vocabulary.tokens
    # Padding after a position never changes that position's logits: no mask is needed.
    np.testing.assert_allclose(again(ids[:, :3]).numpy(), logits[:, :3], rtol=1e-5, atol=1e-6)


def test_batches_shift_targets_weight_real_tokens_and_cover_every_prediction(corpus):
    vocabulary = corpus[0]
    arrays, _ = sequences.encode_ads(ADS * 2, vocabulary)
    seen = 0
    for shuffle in (False, True):
        total = 0
        for inputs, targets, weights in lstm.many_to_many_dataset(arrays, 8, shuffle=shuffle, chunk_batches=2):
            inputs, targets, weights = inputs.numpy(), targets.numpy(), weights.numpy()
            assert inputs.shape == targets.shape == weights.shape
            assert (inputs[:, 0] == BOS_ID).all()
            assert ((targets != 0) == (weights == 1)).all()
            assert (inputs[:, 1:][weights[:, :-1] == 1] == targets[:, :-1][weights[:, :-1] == 1]).all()
            total += int(weights.sum())
        assert total == arrays.predictions
        seen += 1
    assert seen == 2
    with pytest.raises(ValueError, match="no ads"):
        lstm.many_to_many_dataset(sequences.TokenArrays(np.zeros(0, np.uint32), np.zeros(1, np.int64)), 8)


def test_the_loss_is_the_exact_cross_entropy_per_real_token(corpus):
    vocabulary, train, _ = corpus
    model = lesson_model("embedding", len(vocabulary))
    ids, targets, weights = next(iter(lstm.many_to_many_dataset(train, 16)))
    results = model.test_on_batch(ids, targets, weights, return_dict=True)
    logits = model(ids).numpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    chosen = np.take_along_axis(log_probs, targets.numpy()[..., None], -1)[..., 0]
    mask = weights.numpy() == 1
    assert results["loss"] == pytest.approx(-chosen[mask].mean(), rel=1e-4)
    hits = (logits.argmax(-1) == targets.numpy())[mask].mean()
    assert results["sparse_categorical_accuracy"] == pytest.approx(hits, abs=1e-6)
    first_batch = train.subset(range(16))
    metrics = lstm.evaluate_token_arrays(model, first_batch, batch_size=16)
    assert metrics["predictions"] == first_batch.predictions == int(mask.sum())
    assert metrics["cross_entropy"] == pytest.approx(-chosen[mask].mean(), rel=1e-4)


def test_training_as_the_lessons_do_learns_writes_the_run_files_and_reloads_instead(corpus, tmp_path):
    vocabulary, train, validation = corpus
    model = lesson_model("one_hot", len(vocabulary))
    before = lstm.evaluate_token_arrays(model, validation)["cross_entropy"]
    scored = []

    def score(model):
        scored.append(model)
        return summarize_scores(LSTMAdModel.in_training(model, vocabulary, tmp_path).score(ADS[::4]))

    logs = []
    settings = {"units": 16, "epochs": 3}
    assert lstm_training.reload_if_trained(tmp_path, model, settings, log=logs.append) is None
    callbacks = lesson_callbacks(tmp_path, score, log=logs.append)
    batches = lstm.many_to_many_dataset(train, 16, shuffle=True)
    model.fit(
        batches, validation_data=lstm.many_to_many_dataset(validation, 16), epochs=3, callbacks=callbacks, verbose=0
    )
    lstm_training.save_trained(model, vocabulary, tmp_path)
    after = lstm.evaluate_token_arrays(model, validation)["cross_entropy"]
    assert after < before - 0.5 and scored == [model] * 3
    history = lstm_training.read_history(tmp_path)
    assert history["epoch"].tolist() == [0, 1, 2] and (history["seconds"] > 0).all()
    assert {"loss", "val_loss", "val_sparse_categorical_accuracy"} <= set(history.columns)
    curve = pd.read_csv(tmp_path / layout.QUALITY_CURVE_FILE)
    assert list(curve.columns) == CURVE_COLUMNS and curve["epoch"].tolist() == [1, 2, 3]
    assert curve["step"].tolist() == [12, 24, 36] and curve["train_flops"].tolist() == [1e6, 2e6, 3e6]
    assert curve["train_seconds"].is_monotonic_increasing and (curve["validation_ads"] == 15).all()
    assert curve["bits_per_char"].iloc[-1] < curve["bits_per_char"].iloc[0]
    assert not (tmp_path / layout.LSTM_BACKUP_FOLDER).exists()  # removed when training finishes
    assert json.loads((tmp_path / layout.LSTM_STATE_FILE).read_text())["status"] == "complete"

    logs.clear()
    again = lstm_training.reload_if_trained(
        tmp_path, lesson_model("one_hot", len(vocabulary)), settings, log=logs.append
    )
    assert logs[0].startswith("already trained")
    assert lstm.evaluate_token_arrays(again, validation)["cross_entropy"] == pytest.approx(after, rel=1e-5)
    logs.clear()
    other = lesson_model("one_hot", len(vocabulary), units=8)  # another model: its folder starts afresh
    assert lstm_training.reload_if_trained(tmp_path, other, settings, log=logs.append) is None
    assert logs[0].startswith("the model or its settings changed")
    assert not (tmp_path / layout.HISTORY_FILE).exists() and not (tmp_path / layout.LSTM_MODEL_FILE).exists()


TRAINING_SCRIPT = textwrap.dedent("""
    import sys, time
    import keras
    import numpy as np
    from pathlib import Path
    from adgen_utils import layout
    from adgen_utils.corpus import sequences
    from adgen_utils.corpus.text import Vocabulary, tokenize
    from adgen_utils.lstm import model as lstm
    from adgen_utils.lstm import training as lstm_training
    sys.path.insert(0, {here!r})
    from lesson import lesson_callbacks, lesson_model
    ADS = {ads!r}
    folder, sleep_at, sleep, minutes = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    vocabulary = Vocabulary.build((tokenize(a) for a in ADS), min_count=1)
    train, _ = sequences.encode_ads(ADS * 3, vocabulary)  # 180 ads: 12 batches of 16 per epoch
    validation, _ = sequences.encode_ads(ADS[::4], vocabulary)

    class Announce(keras.callbacks.Callback):
        def state(self):
            weights = sum(float(np.abs(w).astype(np.float64).sum()) for w in self.model.get_weights())
            return f"{{weights!r}} after {{int(self.model.optimizer.iterations)}} steps"

        def on_train_begin(self, logs=None):
            print("begins at", self.state(), flush=True)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.batches = epoch, 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if sleep and sleep_at == f"batch 5 of epoch {{self.epoch + 1}}" and self.batches == 5:
                print("interrupted at", self.state(), flush=True)
                time.sleep(sleep)

        def on_epoch_end(self, epoch, logs=None):
            print("epoch", epoch + 1, "ran", self.batches, "batches", flush=True)
            if sleep and sleep_at == f"end of epoch {{epoch + 1}}":
                print("finished", epoch + 1, flush=True)
                time.sleep(sleep)

    def score(model):
        metrics = lstm.evaluate_token_arrays(model, validation)
        return {{"ads": len(validation), "bits_per_char": metrics["cross_entropy"], "per_word_perplexity": 1.0,
                "top5_accuracy": metrics["top5_accuracy"], "top1_accuracy": metrics["accuracy"]}}

    model = lesson_model("embedding", len(vocabulary))
    log = lambda line: print(line, flush=True)
    if lstm_training.reload_if_trained(folder, model, {{"epochs": 3}}, log=log) is None:
        callbacks = [*lesson_callbacks(folder, score, minutes, log=log), Announce()]
        model.fit(lstm.many_to_many_dataset(train, 16, shuffle=True), validation_data=lstm.many_to_many_dataset(validation, 16),
                  epochs=3, callbacks=callbacks, verbose=0)
        lstm_training.save_trained(model, vocabulary, folder)
    print("done", flush=True)
""")


def _script(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAINING_SCRIPT.format(here=str(Path(__file__).parent), ads=ADS))
    return script, tmp_path / "run"


def test_a_killed_run_resumes_after_its_last_finished_epoch(tmp_path):
    script, run = _script(tmp_path)
    run_until(script, run, "finished 2", "end of epoch 2", "30", "15")  # killed while "sleeping" after epoch 2
    assert (run / layout.LSTM_BACKUP_FOLDER).exists()
    resumed = run_to_end(script, run, "-", "0", "15")
    assert "resuming after epoch 2" in resumed and "batches of epoch" not in resumed
    assert "epoch 3 ran 12 batches" in resumed and "epoch 1 ran" not in resumed
    assert lstm_training.read_history(run)["epoch"].tolist() == [0, 1, 2]
    assert pd.read_csv(run / layout.QUALITY_CURVE_FILE)["epoch"].tolist() == [1, 2, 3]
    # Finished: the script's next run reloads it instead of training (its reload_if_trained, called here).
    logs, vocabulary = [], Vocabulary.build((tokenize(a) for a in ADS), min_count=1)
    model = lesson_model("embedding", len(vocabulary))
    assert lstm_training.reload_if_trained(run, model, {"epochs": 3}, log=logs.append) is not None
    assert logs[0].startswith("already trained")


def test_a_run_killed_mid_epoch_resumes_there_with_its_weights_and_optimizer_state(tmp_path):
    script, run = _script(tmp_path)
    # minutes ~ 0: a backup after every batch, so the last one is just before the kill, after 5 of epoch 2's 12 batches.
    interrupted = run_until(script, run, "interrupted at", "batch 5 of epoch 2", "30", "1e-9")[-1].split(" at ", 1)[1]
    assert lstm_training.TimedBackup(run / layout.LSTM_BACKUP_FOLDER).position() == (1, 5)
    assert interrupted.endswith("after 17 steps")  # 12 in epoch 1, 5 in epoch 2
    # Resumed with backups every 15 minutes: how often it backs up does not make it retrain.
    resumed = run_to_end(script, run, "-", "0", "15")
    assert "resuming after epoch 1 and 5 of the 12 batches of epoch 2" in resumed
    assert f"begins at {interrupted}" in resumed  # the same weights and Adam step count
    assert "epoch 2 ran 7 batches" in resumed and "epoch 3 ran 12 batches" in resumed
    assert "epoch 1 ran" not in resumed
    assert lstm_training.read_history(run)["epoch"].tolist() == [0, 1, 2]
    assert not (run / layout.LSTM_BACKUP_FOLDER).exists()


def test_timed_backups_come_only_when_their_minutes_have_passed(corpus, tmp_path):
    vocabulary, train, _ = corpus
    model = lesson_model("embedding", len(vocabulary))
    now = [0.0]
    backup = lstm_training.TimedBackup(tmp_path / "backup", minutes=15, clock=lambda: now[0])
    backup.set_model(model)
    backup.set_params({"steps": 12, "epochs": 1})
    backup.on_train_begin()
    for batch, minute in enumerate([5, 14, 16, 20, 31, 32]):
        now[0] = minute * 60.0
        backup.on_train_batch_end(batch)
        if batch == 1:
            assert backup.position() == (0, 0)  # nothing after 14 minutes
        if batch == 2:
            assert backup.position() == (0, 3)  # after 16 minutes, 3 batches
    assert backup.position() == (0, 5)  # again 15 minutes later (31), not at 32


def test_unigram_baseline_by_hand(corpus):
    vocabulary, _, validation = corpus
    metrics = lstm.unigram_baseline(vocabulary, validation)
    probs = np.asarray(vocabulary.counts, float) / sum(vocabulary.counts)
    targets = [t for i in range(len(validation)) for t in validation.ad(i)[1:]]
    assert metrics["predictions"] == len(targets)
    assert metrics["cross_entropy"] == pytest.approx(-np.mean(np.log(probs[targets])))
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["cross_entropy"]))
    assert metrics["unknown_targets"] == 0


def test_metrics_are_the_same_for_any_chunk_size(corpus):
    vocabulary, train, validation = corpus
    model = lesson_model("embedding", len(vocabulary))
    model.fit(lstm.many_to_many_dataset(train, 16, shuffle=True), epochs=2, verbose=0)
    whole = lstm.evaluate_token_arrays(model, validation, logits_budget_gib=100.0)
    one_by_one = lstm.evaluate_token_arrays(model, validation, logits_budget_gib=1e-9)
    assert 0.2 < whole["accuracy"] < 1  # a partly trained model: hits and misses to get right
    for key, value in whole.items():
        assert one_by_one[key] == pytest.approx(value, rel=1e-5), key


def test_rows_per_chunk_keeps_the_logits_within_the_budget():
    per_row = 3 * 63 * 100_000 * 4  # three float32 (time, vocabulary) tensors per ad
    rows = lstm.rows_per_chunk(100_000, 63)
    assert rows == 14 and rows * per_row <= 2**30 < (rows + 1) * per_row
    assert lstm.rows_per_chunk(100_000, 63, budget_gib=6.0) == 85
    assert lstm.rows_per_chunk(100_000, 63, budget_gib=1e-9) == 1  # never less than one ad


def test_decoding_controls():
    rng = np.random.default_rng(0)
    logits = np.array([9.0, 8.0, 7.0, 0.0, 3.0, 2.0, 1.0])  # ids 0-2 are banned specials by default
    assert lstm_generation.pick_next_token(logits, rng, greedy=True) == 4
    assert {lstm_generation.pick_next_token(logits, rng, top_k=1) for _ in range(20)} == {4}
    assert {lstm_generation.pick_next_token(logits, rng, top_p=0.01) for _ in range(20)} == {4}
    draws = {lstm_generation.pick_next_token(logits, rng, top_k=2, temperature=5.0) for _ in range(200)}
    assert draws == {4, 5}
    assert lstm_generation.pick_next_token(logits, rng, greedy=True, repetition_penalty=2.0, previous=[4, 4]) == 5
    assert lstm_generation.pick_next_token(logits, rng, greedy=True, repetition_penalty=1.0, previous=[4]) == 4
    for bad in ({"temperature": 0}, {"top_p": 0}, {"top_k": -1}, {"repetition_penalty": 0}):
        with pytest.raises(ValueError):
            lstm_generation.pick_next_token(logits, rng, **bad)


def test_generation_refuses_bad_prompts_and_never_emits_special_tokens(corpus):
    vocabulary, train, _ = corpus
    model = lesson_model("embedding", len(vocabulary))
    model.fit(lstm.many_to_many_dataset(train, 16, shuffle=True), epochs=6, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        lstm_generation.generate_many(model, vocabulary, ["   "])
    with pytest.raises(ValueError, match="none of the prompt's words"):
        lstm_generation.generate_many(model, vocabulary, ["Xqzvw Wkjhgf"])
    partly = lstm_generation.generate_many(model, vocabulary, ["Apple Wkjhgf"], seeds=[1], max_new_tokens=5)[0]
    assert partly.unknown_prompt_words == ["Wkjhgf"] and partly.text.startswith("Apple Wkjhgf")
    assert len(partly.new_tokens) <= 5
    greedy = lstm_generation.generate_many(model, vocabulary, ["Sony"], greedy=True)[0]
    assert greedy.text.split()[1] in {"Watch", "TV", "Charger", "Screen"}
    assert not {"<pad>", "<unk>", "<bos>", "<eos>"} & set(greedy.new_tokens)
    assert len(greedy.new_tokens) < 40  # it learned to stop at <eos>
    batched = lstm_generation.generate_many(model, vocabulary, ["Sony", "Apple Watch"], greedy=True, batch_size=2)
    assert batched[0].text == greedy.text


def test_keywords_are_written_into_the_ads_even_words_the_lstm_does_not_know(corpus):
    vocabulary, train, _ = corpus
    model = lesson_model("embedding", len(vocabulary))
    model.fit(lstm.many_to_many_dataset(train, 16, shuffle=True), epochs=2, verbose=0)
    keywords = [("Zqxw-44mm", "Stainless Steel"), (), ("Black",)]
    prompts = ["Apple Watch Band", "Sony", "Fitbit Charge"]
    for greedy in (True, False):
        written = lstm_generation.generate_many(
            model, vocabulary, prompts, greedy=greedy, seeds=[0, 1, 2], keywords=keywords, max_new_tokens=12
        )
        for generation, wanted, prompt in zip(written, keywords, prompts):
            assert generation.text.startswith(prompt) and not missing_keywords(generation.text, wanted)
            assert len(generation.new_tokens) <= 12
        assert "Zqxw-44mm" in written[0].new_tokens and "<unk>" not in written[0].text
    plain = lstm_generation.generate_many(model, vocabulary, prompts, greedy=True, max_new_tokens=12)
    assert (
        plain[1]
        == lstm_generation.generate_many(model, vocabulary, prompts, greedy=True, keywords=keywords, max_new_tokens=12)[
            1
        ]
    )  # no keywords: the model's own ad


def test_tensorflow_grows_its_gpu_memory_on_demand():
    grown, gpus = [], ["GPU:0", "GPU:1"]

    def set_memory_growth(gpu, enable):
        if gpu == "GPU:1":
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        grown.append((gpu, enable))

    config = SimpleNamespace(
        list_physical_devices=lambda kind: gpus if kind == "GPU" else [],
        experimental=SimpleNamespace(set_memory_growth=set_memory_growth),
    )
    with pytest.warns(RuntimeWarning, match="TensorFlow already holds GPU:1"):
        lstm.grow_gpu_memory(config)
    assert grown == [("GPU:0", True)]


def test_the_history_figure_is_saved_under_its_name(tmp_path):
    history = pd.DataFrame(
        {
            "epoch": [0, 1],
            "loss": [6.0, 5.0],
            "sparse_categorical_accuracy": [0.1, 0.2],
            "seconds": [3.0, 3.0],
            "val_loss": [5.5, 5.2],
            "val_sparse_categorical_accuracy": [0.15, 0.18],
        }
    )
    lstm_training.plot_history(history, tmp_path, name="03_lstm")
    assert (tmp_path / "03_lstm_history.png").is_file()
    assert math.isfinite(history["val_loss"].min())
