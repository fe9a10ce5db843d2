"""The lessons' model and callbacks, small: what the LSTM tests train (and their training script imports)."""

import keras

from adgen_utils import layout
from adgen_utils.corpus.text import PAD_ID
from adgen_utils.lstm import model as lstm
from adgen_utils.lstm import training as lstm_training


def lesson_model(first: str, vocabulary_size: int, units: int = 16, learning_rate: float = 0.02) -> keras.Model:
    """Notebook 03's model (``first`` "one_hot") or notebook 04's ("embedding"), compiled as they compile it."""
    keras.utils.set_random_seed(0)
    inputs = lstm.OneHot(vocabulary_size) if first == "one_hot" else keras.layers.Embedding(vocabulary_size, 16)
    model = keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),
            inputs,
            keras.layers.LSTM(units, return_sequences=True),
            keras.layers.Dense(vocabulary_size),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID),
        weighted_metrics=["sparse_categorical_accuracy"],
    )
    return model


def lesson_callbacks(folder, score, minutes: float = 15.0, log=print) -> list:
    """The callbacks the lessons pass to ``fit``, by name."""
    return [
        lstm_training.TimedBackup(folder / layout.LSTM_BACKUP_FOLDER, minutes=minutes, log=log),
        keras.callbacks.ModelCheckpoint(
            str(folder / layout.LSTM_BEST_WEIGHTS_FILE), save_best_only=True, save_weights_only=True
        ),
        lstm_training.EpochTimer(),
        keras.callbacks.CSVLogger(str(folder / layout.HISTORY_FILE), append=True),
        lstm_training.QualityCurve(folder / layout.QUALITY_CURVE_FILE, score, flops_per_epoch=1e6),
    ]
