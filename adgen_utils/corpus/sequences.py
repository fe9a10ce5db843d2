"""Ads as training data: every split encoded once into flat id arrays (nanoGPT's way), memory-mapped
on load. Ad ``i`` is ``ids[offsets[i]:offsets[i + 1]]`` = ``<bos> w1 … wn <eos>``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adgen_utils.corpus.data import SPLITS
from adgen_utils.corpus.text import BOS_ID, EOS_ID, UNK_ID, Vocabulary, tokenize
from adgen_utils.layout import SEQUENCES_INFO_FILE, VOCABULARY_FILE

ORIGINAL_WINDOW = 4
ORIGINAL_STEP = 3


@dataclass
class TokenArrays:
    """Encoded ads: ad ``i`` is ``ids[offsets[i]:offsets[i + 1]]``; ``ids`` uint32, ``offsets`` int64 (ads + 1)."""

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

    def sample(self, count: int | None, seed: int = 0) -> TokenArrays:
        """``count`` ads drawn with ``seed`` in saved order (None or too many: all), since the saved order
        groups similar products."""
        if count is None or count >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), count, replace=False)))


def encode_ads(ads: Sequence[str], vocabulary: Vocabulary, max_tokens: int = 64) -> tuple[TokenArrays, int]:
    """Encode ads once: the arrays and how many were cut to ``max_tokens`` (<bos> and <eos> included)."""
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
        raise FileNotFoundError(f"No encoded split at {path}; run the sequences lesson (02) or `adgen run` first.")
    ids = np.load(path, mmap_mode="r" if mmap else None)
    offsets = np.load(folder / f"{name}.offsets.npy")
    if offsets[-1] != ids.size:
        raise ValueError(
            f"{path} and its offsets disagree ({ids.size} ids, offsets end at {offsets[-1]}); prepare again"
        )
    return TokenArrays(ids, offsets)


# ---------------------------------------------------------------------------------------
# The original study's windows: 4 ids predict the 5th, every 3 ids, each id a one-hot vector


def window_count(tokens, window: int = ORIGINAL_WINDOW, step: int = ORIGINAL_STEP):
    """How many original windows a stream of ``tokens`` ids yields (int or array, never negative)."""
    return np.maximum((np.asarray(tokens) - window - 1) // step + 1, 0)


def one_hot_bytes(windows, vocabulary_size):
    """Bytes of the original's float32 one-hot arrays: (windows, 4, V) inputs + (windows, V) targets."""
    return np.asarray(windows, dtype=np.float64) * (ORIGINAL_WINDOW + 1) * np.asarray(vocabulary_size) * 4


# ---------------------------------------------------------------------------------------
# A run folder's sequences


def prepare_sequences(
    ads, folder: str | Path, min_count: int = 2, max_vocabulary: int | None = None, max_tokens: int = 64
) -> dict:
    """Build the vocabulary on the training split, encode every split, save it all in ``folder``
    (vocabulary.json, ``<split>.ids.npy`` / ``.offsets.npy``, sequences.json) and return that info."""
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
    (folder / SEQUENCES_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_sequences(folder: str | Path, mmap: bool = True) -> tuple[Vocabulary, dict[str, TokenArrays]]:
    """The vocabulary and the encoded splits saved by :func:`prepare_sequences`."""
    folder = Path(folder)
    vocabulary = Vocabulary.load(folder / VOCABULARY_FILE)
    return vocabulary, {split: load_token_arrays(folder, split, mmap) for split in SPLITS}
