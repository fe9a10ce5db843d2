"""LSTM models on real tiny corpora: exact losses, training, resume after a kill, metrics, generation."""

import math
import textwrap
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import run_to_end, run_until

from adgen_utils import layout
from adgen_utils.corpus import sequences
from adgen_utils.corpus.text import BOS_ID, PAD_ID, Vocabulary, tokenize
from adgen_utils.layout import model_dir
from adgen_utils.lstm import generation as lstm_generation
from adgen_utils.lstm import model as lstm
from adgen_utils.lstm import training as lstm_training
from adgen_utils.models import Refusal

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


def _arrays_of(arrays, n):
    subset = arrays.subset(range(n))
    return subset.ids, subset.offsets


def tiny(**overrides):
    settings = dict(embedding_dim=16, units=16, batch_size=16, epochs=3, learning_rate=0.02, dropout=0.0)
    settings.update(overrides)
    return lstm.LSTMConfig(**settings)


@pytest.mark.parametrize("model_input", ["one_hot", "embedding"])
def test_models_map_ids_to_logits_and_save_with_their_custom_layers(model_input, corpus, tmp_path):
    vocabulary, train, _ = corpus
    model = lstm.build_model(tiny(input=model_input, layers=2), len(vocabulary))
    ids = np.array([[BOS_ID, 4, 5, PAD_ID]], dtype=np.int32)
    logits = model(ids).numpy()
    assert logits.shape == (1, 4, len(vocabulary)) and logits.dtype == np.float32
    assert model.get_layer("encoder").get_layer("lstm_2") is not None
    model.save(tmp_path / "model.keras")
    again = lstm.load_model(tmp_path)
    np.testing.assert_allclose(again(ids).numpy(), logits, rtol=1e-5, atol=1e-6)


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="input"):
        lstm.LSTMConfig(input="bag_of_words")
    with pytest.raises(ValueError, match="loss"):
        lstm.LSTMConfig(loss="hinge")
    with pytest.raises(ValueError, match="units"):
        lstm.LSTMConfig(units=0)


def test_loss_is_the_exact_cross_entropy_per_real_token(corpus):
    import tensorflow as tf

    vocabulary, train, _ = corpus
    model = lstm.build_model(tiny(), len(vocabulary))
    trainer = lstm_training.LanguageModelTrainer(model)
    trainer.compile(optimizer="adam")
    ids, targets, weights = next(iter(lstm.many_to_many_dataset(train, 16)))
    results = trainer.test_on_batch(ids, targets, weights, return_dict=True)
    logits = model(ids).numpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    chosen = np.take_along_axis(log_probs, targets.numpy()[..., None], -1)[..., 0]
    mask = weights.numpy() == 1
    assert results["loss"] == pytest.approx(-chosen[mask].mean(), rel=1e-4)
    assert results["accuracy"] == pytest.approx((logits.argmax(-1) == targets.numpy())[mask].mean(), abs=1e-6)
    assert tf.reduce_all(tf.equal(targets[weights == 0], 0))
    first_batch = sequences.TokenArrays(*_arrays_of(train, 16))
    metrics = lstm.evaluate_token_arrays(model, first_batch, batch_size=16)
    assert metrics["predictions"] == first_batch.predictions
    assert metrics["cross_entropy"] > 0


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_training_learns_saves_and_reloads_instead_of_retraining(loss, corpus, tmp_path):
    vocabulary, train, validation = corpus
    config = tiny(loss=loss, sampled=8, epochs=4)
    before = lstm.evaluate_token_arrays(lstm.build_model(config, len(vocabulary)), validation)
    logs = []
    result = lstm_training.train_language_model(config, vocabulary, train, validation, tmp_path, log=logs.append)
    after = lstm.evaluate_token_arrays(result.model, validation)
    assert after["cross_entropy"] < before["cross_entropy"] - 0.5
    assert list(result.history["epoch"]) == list(range(len(result.history)))
    assert {"val_loss", "val_accuracy", "val_top5_accuracy", "seconds"} <= set(result.history.columns)
    assert (result.history["seconds"] > 0).all()  # every epoch timed (EpochTimer)
    for name in ("model.keras", "vocabulary.json", "training.json", "history.csv"):
        assert (tmp_path / name).exists()
    assert not (tmp_path / "backup").exists()  # removed after a finished run
    assert any(line.startswith("epoch 1/4") for line in logs)
    logs.clear()
    again = lstm_training.train_language_model(config, vocabulary, train, validation, tmp_path, log=logs.append)
    assert logs and logs[0].startswith("already trained")
    assert lstm.evaluate_token_arrays(again.model, validation)["cross_entropy"] == pytest.approx(
        after["cross_entropy"], rel=1e-5
    )
    logs.clear()
    lstm_training.train_language_model(
        tiny(loss=loss, sampled=8, epochs=1), vocabulary, train, validation, tmp_path, log=logs.append
    )
    assert logs[0].startswith("settings changed")


RESUMABLE_RUN = textwrap.dedent("""
    import sys, time
    import keras
    from adgen_utils.lstm import model as lstm
    from adgen_utils.lstm import training as lstm_training
    from adgen_utils.corpus import sequences
    from adgen_utils.corpus.text import Vocabulary, tokenize
    ADS = {ads!r}
    vocabulary = Vocabulary.build((tokenize(a) for a in ADS), min_count=1)
    train, _ = sequences.encode_ads(ADS * 3, vocabulary)
    validation, _ = sequences.encode_ads(ADS[::4], vocabulary)
    config = lstm.LSTMConfig(embedding_dim=16, units=16, batch_size=16, epochs=4, learning_rate=0.02, dropout=0.0, patience=10)

    class Announce(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print("finished", epoch + 1, flush=True)
            time.sleep(float(sys.argv[2]))

    result = lstm_training.train_language_model(config, vocabulary, train, validation, sys.argv[1], progress=False,
                                       log=lambda line: print(line, flush=True), extra_callbacks=[Announce()])
    print("started at", result.started_at_epoch, "epochs", len(result.history), flush=True)
""")


def test_a_killed_run_resumes_after_its_last_finished_epoch(tmp_path):
    script, run = tmp_path / "train.py", tmp_path / "run"
    script.write_text(RESUMABLE_RUN.format(ads=ADS))
    run_until(script, run, "finished 2", "30")  # killed while "sleeping" after epoch 2
    assert (run / "backup").exists()
    resumed = run_to_end(script, run, "0")
    assert "resuming after epoch 2" in resumed and "batches of epoch" not in resumed
    assert "finished 3" in resumed and "finished 1" not in resumed
    assert "started at 2 epochs 4" in resumed
    history = lstm_training.read_history(run)
    assert history["epoch"].tolist() == [0, 1, 2, 3]


def test_the_notebook_steps_train_measure_compare_and_write(corpus, tmp_path):
    vocabulary, train, validation = corpus
    splits = {"train": train, "validation": validation, "test": validation}
    setup = lstm_training.LSTMTraining(
        tiny(epochs=2), vocabulary, splits, train, model_dir(tmp_path, "04_embedding_lstm"), curve_ads=ADS[::4]
    )
    result = lstm_training.train_model(setup, progress=False)
    curve = pd.read_csv(setup.model_dir / layout.QUALITY_CURVE_FILE)  # one row per epoch, the budget growing
    assert curve["epoch"].tolist() == [1, 2] and curve["validation_ads"].tolist() == [len(ADS[::4])] * 2
    assert (
        curve["train_seconds"].is_monotonic_increasing
        and curve["train_flops"].iloc[1] == 2 * curve["train_flops"].iloc[0]
    )
    assert curve["bits_per_char"].iloc[1] < curve["bits_per_char"].iloc[0]
    results = lstm_training.evaluate_trained(setup, result, train_ads=20)
    assert (setup.model_dir / "metrics.csv").is_file()
    assert {("trained", "train (sample)"), ("untrained", "test"), ("unigram", "test")} <= set(results.index)
    original = lstm_training.beside_original(results)
    assert list(original.index[-2:]) == ["this LSTM, trained (train (sample))", "this LSTM, untrained (train (sample))"]
    losses = lstm_training.loss_comparison(setup, result)
    assert list(losses.index) == ["full softmax", "sampled softmax"] and (losses["seconds per epoch"] > 0).all()
    assert (tmp_path / "models" / "embedding_lstm_sampled_loss" / "model.keras").is_file()
    ads = lstm_training.sample_ads(result.model, vocabulary, ["Sony", "Wkjhgf"], [0.8], seed=0)
    assert list(ads.columns) == ["greedy", "greedy, repetition penalty 1.3", "t=0.8"]
    text = lstm_training.findings(setup, results, lstm_training.timing_comparison(tmp_path), losses)
    assert text.count("\n* ") == 4 and "Notebook 03's results are not in this run folder" in text


def _finished_training(run_dir, name, val_losses, seconds=None, units=16):
    """A finished LSTM folder of notebook ``name`` as training leaves it: training.json and history.csv."""
    import json

    import pandas as pd

    folder = model_dir(run_dir, name)
    folder.mkdir(parents=True)
    config = {"input": "one_hot" if name == "03_lstm" else "embedding", "units": units, "layers": 1, "loss": "full"}
    settings = {"config": config, "vocabulary_size": 100, "train_ads": 600}
    (folder / "training.json").write_text(json.dumps({"settings": settings, "status": "complete"}))
    history = pd.DataFrame({"epoch": range(len(val_losses)), "loss": val_losses, "val_loss": val_losses})
    if seconds is not None:
        history["seconds"] = seconds
    history.to_csv(folder / "history.csv", index=False)


def test_findings_are_computed_from_the_run_and_compare_with_notebook_03_only_when_it_is_there(tmp_path):
    import pandas as pd

    rows = {("trained", "train (sample)"): (0.40, 3.0), ("trained", "validation"): (0.30, 3.5)}
    rows |= {("trained", "test"): (0.30, 3.5), ("untrained", "test"): (0.0, 4.6), ("unigram", "test"): (0.1, 4.0)}
    results = pd.DataFrame(
        [{"accuracy": a, "cross_entropy": c, "perplexity": math.exp(c)} for a, c in rows.values()],
        index=pd.MultiIndex.from_tuples(rows, names=["model", "split"]),
    )
    setup = SimpleNamespace(config=tiny(input="embedding", units=32, embedding_dim=20), vocabulary=range(1000))
    _finished_training(tmp_path, "04_embedding_lstm", [4.0, 3.5, 3.2], seconds=[2.0, 2.0, 2.0])

    alone = lstm_training.findings(setup, results, lstm_training.timing_comparison(tmp_path))
    assert "0.100 lower on ads the model never saw" in alone
    assert "3.500 nats per token (perplexity 33.1), below the unigram floor's 4.000" in alone
    assert "2,560 multiply-adds" in alone and "128,000, 50× as many" in alone  # 4 gates × 32 units × 20 or 1,000
    assert "Notebook 03's results are not in this run folder" in alone and "an epoch took 2 s" in alone

    _finished_training(tmp_path, "03_lstm", [4.2, 3.6, 3.4], seconds=[5.0, 5.0, 5.0])
    timing = lstm_training.timing_comparison(tmp_path)
    assert timing["seconds to 03's best"].tolist() == [15.0, 6.0]  # the Embedding LSTM passed 3.4 in epoch 3
    both = lstm_training.findings(setup, results, timing)
    assert "3.200 nats per token against 3.400 (lower)" in both
    assert (
        "after 6 s of training against 15 (less)" in both
        and "after 6 s, where the one-hot LSTM took 15 s: less time" in both
    )

    (model_dir(tmp_path, "03_lstm") / "history.csv").write_text("epoch,loss,val_loss\n0,3.0,3.0\n")
    older = lstm_training.findings(setup, results, lstm_training.timing_comparison(tmp_path))
    assert "3.200 nats per token against 3.000 (higher)" in older and "older than the epoch timings" in older


def test_unigram_baseline_by_hand(corpus):
    vocabulary, _, validation = corpus
    metrics = lstm.unigram_baseline(vocabulary, validation)
    probs = np.asarray(vocabulary.counts, float) / sum(vocabulary.counts)
    targets = [t for i in range(len(validation)) for t in validation.ad(i)[1:]]
    assert metrics["predictions"] == len(targets)
    assert metrics["cross_entropy"] == pytest.approx(-np.mean(np.log(probs[targets])))
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["cross_entropy"]))
    assert metrics["unknown_targets"] == 0


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


def test_generation_refuses_bad_prompts_and_never_emits_special_tokens(corpus, tmp_path):
    vocabulary, train, validation = corpus
    result = lstm_training.train_language_model(tiny(epochs=6), vocabulary, train, validation, tmp_path, progress=False)
    with pytest.raises(ValueError, match="empty"):
        lstm_generation.generate(result.model, vocabulary, "   ")
    with pytest.raises(ValueError, match="none of the prompt's words"):
        lstm_generation.generate(result.model, vocabulary, "Xqzvw Wkjhgf")
    partly = lstm_generation.generate(result.model, vocabulary, "Apple Wkjhgf", seed=1, max_new_tokens=5)
    assert partly.unknown_prompt_words == ["Wkjhgf"] and partly.text.startswith("Apple Wkjhgf")
    assert len(partly.new_tokens) <= 5
    greedy = lstm_generation.generate(result.model, vocabulary, "Sony", greedy=True)
    assert greedy.text.split()[1] in {"Watch", "TV", "Charger", "Screen"}
    assert not {"<pad>", "<unk>", "<bos>", "<eos>"} & set(greedy.new_tokens)
    assert len(greedy.new_tokens) < 40  # it learned to stop at <eos>
    table = lstm_generation.decoding_settings_table(
        result.model, vocabulary, ["Sony", "Wkjhgf"], {"greedy": {"greedy": True}, "sampled": {"top_k": 5}}
    )
    assert table.loc["Sony", "greedy"] == greedy.text
    assert (
        table.loc["Wkjhgf", "greedy"]
        == table.loc["Wkjhgf", "sampled"]
        == lstm_generation.prompt_refusal("Wkjhgf", vocabulary)
    )
    assert isinstance(table.loc["Wkjhgf", "greedy"], Refusal)


MID_EPOCH_RUN = textwrap.dedent("""
    import sys, time
    import keras
    import numpy as np
    from adgen_utils.lstm import model as lstm
    from adgen_utils.lstm import training as lstm_training
    from adgen_utils.corpus import sequences
    from adgen_utils.corpus.text import Vocabulary, tokenize
    ADS = {ads!r}
    vocabulary = Vocabulary.build((tokenize(a) for a in ADS), min_count=1)
    train, _ = sequences.encode_ads(ADS * 3, vocabulary)  # 180 ads: 12 batches of 16 per epoch
    validation, _ = sequences.encode_ads(ADS[::4], vocabulary)
    config = lstm.LSTMConfig(embedding_dim=16, units=16, batch_size=16, epochs=3, learning_rate=0.02, dropout=0.0,
                             patience=10, checkpoint_minutes=float(sys.argv[3]))

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
            if self.epoch == 1 and self.batches == 5 and float(sys.argv[2]):
                print("interrupted at", self.state(), flush=True)
                time.sleep(float(sys.argv[2]))

        def on_epoch_end(self, epoch, logs=None):
            print("epoch", epoch + 1, "ran", self.batches, "batches", flush=True)

    result = lstm_training.train_language_model(config, vocabulary, train, validation, sys.argv[1], progress=False,
                                       log=lambda line: print(line, flush=True), extra_callbacks=[Announce()])
    print("started at", result.started_at_epoch, "epochs", len(result.history), flush=True)
""")


def test_a_run_killed_mid_epoch_resumes_there_with_its_weights_and_optimizer_state(tmp_path):
    script, run = tmp_path / "train.py", tmp_path / "run"
    script.write_text(MID_EPOCH_RUN.format(ads=ADS))
    # checkpoint_minutes ~ 0: a backup after every batch, so the last one is just before the kill,
    # which comes after 5 of epoch 2's 12 batches.
    interrupted = run_until(script, run, "interrupted at", "30", "1e-9")[-1].split(" at ", 1)[1]
    assert lstm_training.TimedBackup(str(run / "backup")).position() == (1, 5)
    assert interrupted.endswith("after 17 steps")  # 12 in epoch 1, 5 in epoch 2
    # Resumed with the default of 15 minutes: how often it backs up is not a setting that retrains.
    resumed = run_to_end(script, run, "0", "15")
    assert "resuming after epoch 1 and 5 of the 12 batches of epoch 2" in resumed
    assert f"begins at {interrupted}" in resumed  # the same weights and Adam step count
    assert "epoch 2 ran 7 batches" in resumed and "epoch 3 ran 12 batches" in resumed
    assert "epoch 1 ran" not in resumed and "started at 1 epochs 3" in resumed
    assert lstm_training.read_history(run)["epoch"].tolist() == [0, 1, 2]
    assert not (run / "backup").exists()


def test_timed_backups_come_only_when_their_minutes_have_passed(corpus, tmp_path):
    vocabulary, train, _ = corpus
    model = lstm.build_model(tiny(), len(vocabulary))
    trainer = lstm_training.LanguageModelTrainer(model)
    trainer.compile(optimizer="adam")
    trainer(next(iter(lstm.many_to_many_dataset(train, 16)))[0])  # built, as fit needs it
    now = [0.0]
    backup = lstm_training.TimedBackup(str(tmp_path / "backup"), minutes=15, clock=lambda: now[0])
    backup.set_model(trainer)
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


def test_rows_per_chunk_keeps_the_logits_within_the_budget():
    per_row = 3 * 63 * 100_000 * 4  # three float32 (time, vocabulary) tensors per ad
    rows = lstm.rows_per_chunk(100_000, 63)
    assert rows == 14 and rows * per_row <= 2**30 < (rows + 1) * per_row
    assert lstm.rows_per_chunk(100_000, 63, budget_gib=6.0) == 85
    assert lstm.rows_per_chunk(100_000, 63, budget_gib=1e-9) == 1  # never less than one ad


def test_metrics_are_the_same_for_any_chunk_size(corpus):
    vocabulary, train, validation = corpus
    lstm.keras.utils.set_random_seed(0)
    model = lstm.build_model(tiny(), len(vocabulary))
    trainer = lstm_training.LanguageModelTrainer(model)
    trainer.compile(optimizer=lstm.keras.optimizers.Adam(0.02))
    trainer.fit(lstm.many_to_many_dataset(train, 16, shuffle=True), epochs=2, verbose=0, shuffle=False)
    whole = lstm.evaluate_token_arrays(model, validation, logits_budget_gib=100.0)
    one_by_one = lstm.evaluate_token_arrays(model, validation, logits_budget_gib=1e-9)
    assert 0.2 < whole["accuracy"] < 1  # a partly trained model: hits and misses to get right
    for key, value in whole.items():
        assert one_by_one[key] == pytest.approx(value, rel=1e-5), key
    # Keras's validation metrics are token-weighted too: the same for batches of 15 and of 1 ad.
    for rows in (15, 1):
        logs = trainer.evaluate(lstm.many_to_many_dataset(validation, rows), verbose=0, return_dict=True)
        assert logs["loss"] == pytest.approx(whole["cross_entropy"], rel=1e-5)
        assert logs["accuracy"] == pytest.approx(whole["accuracy"], rel=1e-5)
        assert logs["top5_accuracy"] == pytest.approx(whole["top5_accuracy"], rel=1e-5)


def test_validation_batches_shrink_to_the_logits_budget(corpus, tmp_path):
    vocabulary, train, validation = corpus

    class CountValidationBatches(lstm.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def on_test_batch_end(self, batch, logs=None):
            self.batches += 1

    results = {}
    for budget in (1.0, 1e-9):
        counter = CountValidationBatches()
        result = lstm_training.train_language_model(
            tiny(epochs=1),
            vocabulary,
            train,
            validation,
            tmp_path / str(budget),
            progress=False,
            log=lambda *_: None,
            extra_callbacks=[counter],
            logits_budget_gib=budget,
        )
        results[budget] = (counter.batches, float(result.history["val_loss"].iloc[0]))
    assert results[1.0][0] == math.ceil(len(validation) / 16) and results[1e-9][0] == len(validation)
    assert results[1e-9][1] == pytest.approx(results[1.0][1], rel=1e-4)  # same model, same validation loss
