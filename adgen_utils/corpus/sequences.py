"""Stage 3: turning ads into training examples, the original way and the efficient way.

* The original study concatenated all ads into one token stream and cut it into windows of
  4 ids that predict the next id, moving 3 ids at a time (:func:`original_windows`); it fed
  them as one-hot vectors built batch by batch (:func:`one_hot_batch`).
* Here, every position of an ad predicts its next token, from ``<bos>`` to ``<eos>``
  (many-to-many). Ads are encoded once into a flat uint32 array plus offsets
  (:class:`TokenArrays`, saved as ``.npy`` and memory-mapped on load), and
  :func:`many_to_many_dataset` pads each batch to its longest ad with sparse integer
  targets and a 0/1 weight per position. Nothing is re-tokenized during training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adgen_utils.corpus.data import SPLITS
from adgen_utils.corpus.text import BOS_ID, EOS_ID, UNK_ID, Vocabulary, tokenize
from adgen_utils.figures import save_figure, subplots
from adgen_utils.layout import SEQUENCES_INFO_FILE, VOCABULARY_FILE

ORIGINAL_WINDOW = 4
ORIGINAL_STEP = 3


@dataclass
class TokenArrays:
    """Encoded ads: ad ``i`` is ``ids[offsets[i]:offsets[i + 1]]`` = <bos> w1 … wn <eos>.

    ``ids`` is uint32 of shape (total tokens,), ``offsets`` int64 of shape (ads + 1,).
    """

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def ad(self, i: int) -> np.ndarray:
        """Ids of ad ``i``, with <bos> and <eos>."""
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def predictions(self) -> int:
        """Next-token predictions in these ads: every token after <bos> is one target."""
        return int(self.ids.size - len(self))

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per ad including <bos> and <eos>, shape (ads,)."""
        return np.diff(self.offsets)

    def subset(self, indices: Sequence[int]) -> TokenArrays:
        """A new TokenArrays holding only the ads at ``indices`` (in that order)."""
        pieces = [self.ad(i) for i in indices]
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in pieces])
        ids = np.concatenate(pieces).astype(np.uint32) if pieces else np.zeros(0, np.uint32)
        return TokenArrays(ids, offsets)


def encode_ads(ads: Sequence[str], vocabulary: Vocabulary, max_tokens: int = 64) -> tuple[TokenArrays, int]:
    """Tokenize and encode ads once; return the arrays and how many ads were cut to ``max_tokens``.

    ``max_tokens`` counts <bos> and <eos>; a longer ad keeps its first ``max_tokens - 2`` tokens
    and still ends with <eos>.
    """
    if max_tokens < 3:
        raise ValueError(f"max_tokens must leave room for <bos>, a word and <eos>, got {max_tokens}")
    offsets = np.zeros(len(ads) + 1, dtype=np.int64)
    chunks = []
    truncated = 0
    for i, ad in enumerate(ads):
        ids = vocabulary.encode(tokenize(ad))
        if len(ids) > max_tokens - 2:
            ids = ids[: max_tokens - 2]
            truncated += 1
        chunks.append([BOS_ID, *ids, EOS_ID])
        offsets[i + 1] = offsets[i] + len(ids) + 2
    flat = np.fromiter((t for chunk in chunks for t in chunk), dtype=np.uint32, count=int(offsets[-1]))
    return TokenArrays(flat, offsets), truncated


def save_token_arrays(arrays: TokenArrays, folder: str | Path, name: str) -> Path:
    """Write ``name.ids.npy`` and ``name.offsets.npy`` into ``folder``; return the ids path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{name}.offsets.npy", arrays.offsets)
    path = folder / f"{name}.ids.npy"
    np.save(path, arrays.ids)
    return path


def load_token_arrays(folder: str | Path, name: str, mmap: bool = True) -> TokenArrays:
    """Read arrays written by :func:`save_token_arrays`, memory-mapped (read-only) by default."""
    folder = Path(folder)
    path = folder / f"{name}.ids.npy"
    if not path.exists():
        raise FileNotFoundError(f"No encoded split at {path}; run notebook 02_sequences first.")
    ids = np.load(path, mmap_mode="r" if mmap else None)
    offsets = np.load(folder / f"{name}.offsets.npy")
    if offsets[-1] != ids.size:
        raise ValueError(
            f"{path} and its offsets disagree ({ids.size} ids, offsets end at {offsets[-1]}); prepare again"
        )
    return TokenArrays(ids, offsets)


def save_sequence_info(folder: str | Path, info: dict) -> None:
    """Record how the sequences were made (vocabulary size, counts) as ``sequences.json``."""
    Path(folder, SEQUENCES_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


# ---------------------------------------------------------------------------------------
# The original study's windows


def original_stream(arrays: TokenArrays) -> np.ndarray:
    """All ads' word ids concatenated without <bos>/<eos>, as the original did, shape (tokens,)."""
    keep = (arrays.ids != BOS_ID) & (arrays.ids != EOS_ID)
    return np.asarray(arrays.ids[keep], dtype=np.int32)


def window_count(tokens, window: int = ORIGINAL_WINDOW, step: int = ORIGINAL_STEP):
    """How many original windows a stream of ``tokens`` ids yields (int or array, never negative)."""
    return np.maximum((np.asarray(tokens) - window - 1) // step + 1, 0)


def one_hot_bytes(windows, vocabulary_size):
    """Bytes of the original's float32 one-hot arrays: (windows, 4, V) inputs + (windows, V) targets."""
    return np.asarray(windows, dtype=np.float64) * (ORIGINAL_WINDOW + 1) * np.asarray(vocabulary_size) * 4


def original_windows(stream: np.ndarray, window: int = ORIGINAL_WINDOW, step: int = ORIGINAL_STEP):
    """Windows of ``window`` ids and the id after each, every ``step`` ids.

    Returns ``inputs`` of shape (n, window) and ``targets`` of shape (n,), int32, where
    n = (len(stream) - window - 1) // step + 1 (0 for a stream shorter than window + 1).
    """
    stream = np.asarray(stream, dtype=np.int32)
    n = int(window_count(len(stream), window, step))
    starts = np.arange(n) * step
    inputs = stream[starts[:, None] + np.arange(window)[None, :]] if n else np.zeros((0, window), np.int32)
    targets = stream[starts + window] if n else np.zeros(0, np.int32)
    return inputs, targets


def one_hot_batch(inputs: np.ndarray, targets: np.ndarray, vocabulary_size: int):
    """The original's batch: inputs (B, window, V) and targets (B, V), float32 one-hot."""
    x = np.zeros((*inputs.shape, vocabulary_size), dtype=np.float32)
    np.put_along_axis(x, inputs[..., None], 1.0, axis=-1)
    y = np.zeros((len(targets), vocabulary_size), dtype=np.float32)
    y[np.arange(len(targets)), targets] = 1.0
    return x, y


# ---------------------------------------------------------------------------------------
# The efficient form: many-to-many batches for tf.data


def memory_comparison(arrays: TokenArrays, vocabulary_size: int, batch_size: int = 4096) -> dict:
    """Bytes each representation needs for these ads: one-hot windows vs flat ids (int sizes)."""
    stream = original_stream(arrays)
    windows = int(window_count(len(stream)))
    return {
        "original windows": windows,
        "original one-hot arrays, all windows (bytes)": int(one_hot_bytes(windows, vocabulary_size)),
        "original one-hot batch of 4096 (bytes)": int(one_hot_bytes(min(batch_size, windows), vocabulary_size)),
        "many-to-many predictions": arrays.predictions,
        "flat uint32 ids + offsets (bytes)": int(arrays.ids.size * 4 + arrays.offsets.size * 8),
    }


# ---------------------------------------------------------------------------------------
# Preparing a run folder once, for notebooks 03 and 04 and the benchmarks


def prepare_sequences(
    ads, folder: str | Path, min_count: int = 2, max_vocabulary: int | None = None, max_tokens: int = 64
) -> dict:
    """Build the vocabulary on the training split, encode every split once, and save it all.

    ``ads`` is the DataFrame saved by notebook 01 (columns ``ad`` and ``split``). Writes
    ``vocabulary.json``, ``<split>.ids.npy`` / ``<split>.offsets.npy`` and ``sequences.json``
    into ``folder``; returns that info (sizes, predictions, truncated ads, unknown shares).
    """

    folder = Path(folder)
    train_ads = ads.loc[ads["split"] == "train", "ad"].tolist()
    if not train_ads:
        raise ValueError("the training split is empty: nothing to build a vocabulary from")
    vocabulary = Vocabulary.build((tokenize(ad) for ad in train_ads), min_count=min_count, max_size=max_vocabulary)
    vocabulary.save(folder / VOCABULARY_FILE)
    info = {"vocabulary_size": len(vocabulary), "min_count": min_count, "max_tokens": max_tokens, "splits": {}}
    for split in SPLITS:
        split_ads = ads.loc[ads["split"] == split, "ad"].tolist()
        arrays, truncated = encode_ads(split_ads, vocabulary, max_tokens)
        save_token_arrays(arrays, folder, split)
        words = np.asarray(arrays.ids)
        real = (words != BOS_ID) & (words != EOS_ID)
        info["splits"][split] = {
            "ads": len(arrays),
            "predictions": arrays.predictions,
            "truncated_ads": truncated,
            "unknown_word_share": float((words[real] == UNK_ID).mean()) if real.any() else 0.0,
        }
    save_sequence_info(folder, info)
    return info


def load_sequences(folder: str | Path, mmap: bool = True) -> tuple[Vocabulary, dict[str, TokenArrays]]:
    """The vocabulary and the encoded splits saved by :func:`prepare_sequences`."""

    folder = Path(folder)
    vocabulary = Vocabulary.load(folder / VOCABULARY_FILE)
    return vocabulary, {split: load_token_arrays(folder, split, mmap) for split in SPLITS}


def plot_memory_comparison(comparison: dict, figures_dir=None):
    """Bars (MiB, log scale): the original's one-hot arrays against the flat id arrays, from
    :func:`memory_comparison`."""

    labels = {
        "original one-hot arrays, all windows (bytes)": "original: one-hot arrays\nfor all windows",
        "original one-hot batch of 4096 (bytes)": "original: one-hot\nbatch of 4096 windows",
        "flat uint32 ids + offsets (bytes)": "here: flat uint32 ids\n+ offsets (all ads)",
    }
    fig, ax = subplots(figsize=(9, 3.2))
    bars = ax.barh(list(labels.values()), [comparison[key] / 2**20 for key in labels], color=["C3", "C1", "C2"])
    ax.bar_label(bars, fmt=" {:,.1f} MiB", fontsize=9)
    ax.set(xscale="log", xlabel="MiB (log scale)")
    ax.set_title(
        f"{comparison['original windows']:,} original windows vs {comparison['many-to-many predictions']:,} many-to-many predictions"
    )
    ax.margins(x=0.25)
    fig.tight_layout()
    save_figure(fig, figures_dir, "02_memory")
    return fig
