"""Shared fixtures (real CSV files written into a temporary folder, the embedded ads, a tiny
model) ; helpers.py holds what tests import by name."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_file(tmp_path):
    """write_file("a/b.csv", b"...") -> Path: writes bytes (or text as UTF-8) under tmp_path."""

    def write(relative: str, content) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return write


@pytest.fixture(scope="session")
def embedded_ads():
    """The embedded corpus, cleaned and split (DataFrame with ad, category, split, ...)."""
    from adgen_utils.corpus.data import load_ads

    ads, _ = load_ads("embedded", progress=False)
    return ads


@pytest.fixture(scope="module")
def ads_run_dir(embedded_ads, tmp_path_factory):
    """A run folder holding the embedded ads, as notebook 01 leaves it (one per test module)."""
    from adgen_utils import layout
    from adgen_utils.corpus.data import DATASET_FILE

    folder = tmp_path_factory.mktemp("run")
    (folder / layout.DATA_FOLDER).mkdir()
    embedded_ads.to_parquet(folder / layout.DATA_FOLDER / DATASET_FILE, index=False)
    return folder


@pytest.fixture(scope="session")
def tiny_folder(embedded_ads, tmp_path_factory):
    """An untrained tiny GPT-Neo with a tokenizer trained on 2,000 embedded training ads."""
    from adgen_utils.transformer import pretrained

    return pretrained.resolve_model(
        "tiny",
        models_dir=tmp_path_factory.mktemp("models"),
        training_texts=embedded_ads.loc[embedded_ads["split"] == "train", "ad"].head(2000),
    )


@pytest.fixture(scope="session")
def lstm_folder(tmp_path_factory):
    """A small word-level LSTM written as notebook 04 writes it, trained for a few epochs on
    helpers.LSTM_ADS and saved as the notebooks save it (model.keras, vocabulary.json)."""
    import keras
    from helpers import LSTM_ADS

    from adgen_utils.corpus import sequences
    from adgen_utils.corpus.text import PAD_ID, Vocabulary, tokenize
    from adgen_utils.lstm import model as lstm
    from adgen_utils.lstm import training as lstm_training

    keras.utils.set_random_seed(0)
    vocabulary = Vocabulary.build((tokenize(a) for a in LSTM_ADS), min_count=1)
    train, _ = sequences.encode_ads(LSTM_ADS * 4, vocabulary)
    model = keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),
            keras.layers.Embedding(len(vocabulary), 16),
            keras.layers.LSTM(32, return_sequences=True),
            keras.layers.Dense(len(vocabulary)),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID),
    )
    model.fit(lstm.many_to_many_dataset(train, 12, shuffle=True), epochs=8, verbose=0)
    folder = tmp_path_factory.mktemp("lstm")
    lstm_training.save_trained(model, vocabulary, folder)
    return folder
