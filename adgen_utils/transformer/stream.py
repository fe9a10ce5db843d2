"""Training blocks on disk, for corpora too large to tokenize in memory (~100M tokens).

``tokens.bin`` holds every ad's token ids and its end-of-text token (little-endian uint32, as nanoGPT),
``tokens.json`` what it holds; :class:`TokenFileBlocks` reads it through ``np.memmap`` as packed blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from adgen_utils.layout import TOKENS_FILE, TOKENS_INFO_FILE

IGNORE = -100  # label id the loss skips (padding)
CHUNK = 20_000  # texts tokenized at a time


def token_ids(texts, tokenizer) -> list[list[int]]:
    """Each text's token ids (no special tokens added); an empty or blank text is an error."""
    if any(not t or not t.strip() for t in texts):
        raise ValueError("cannot train on an empty text")
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def end_of_text_stream(ids: list[list[int]], eos: int) -> np.ndarray:
    """The texts' ids joined, each followed by ``eos``: one uint32 array of sum(len + 1) tokens."""
    lengths = np.fromiter((len(i) + 1 for i in ids), dtype=np.int64, count=len(ids))
    flat = np.empty(int(lengths.sum()), dtype=np.uint32)
    for row, end in zip(ids, np.cumsum(lengths)):
        flat[end - len(row) - 1 : end - 1] = row
        flat[end - 1] = eos
    return flat


def in_chunks(texts, size: int = CHUNK):
    """``texts`` (a sequence) ``size`` at a time, for :func:`prepare_token_file`."""
    return (texts[start : start + size] for start in range(0, len(texts), size))


def prepare_token_file(chunks, tokenizer, folder: str | Path, settings: dict, progress=None) -> dict:
    """Append ``chunks`` of texts, each followed by end-of-text, to ``folder/tokens.bin`` (reused when made
    with the same ``settings``); returns ``tokens.json``'s info. ``progress`` gets the texts done so far."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info_path, tokens_path = folder / TOKENS_INFO_FILE, folder / TOKENS_FILE
    if info_path.is_file() and tokens_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("settings") == settings and tokens_path.stat().st_size == 4 * info["tokens"]:
            return info
    tokens = texts = 0
    staged = tokens_path.with_name(TOKENS_FILE + ".tmp")
    with open(staged, "wb") as file:
        for chunk in chunks:
            ids = token_ids(chunk, tokenizer)
            flat = end_of_text_stream(ids, tokenizer.eos_token_id)
            flat.astype("<u4", copy=False).tofile(file)
            tokens, texts = tokens + len(flat), texts + len(ids)
            if progress is not None:
                progress(texts)
    staged.replace(tokens_path)
    info = {"tokens": tokens, "texts": texts, "settings": settings}
    info_path.write_text(json.dumps(info, indent=2))
    return info


class TokenFileBlocks:
    """A map-style dataset of packed blocks read from a token file (see the module docstring): item
    ``i`` is a dict of int64 tensors ``input_ids``, ``labels`` (-100 on padding) and
    ``attention_mask``, each of ``block_size`` tokens. ``tokens`` counts the real tokens."""

    def __init__(self, folder: str | Path, block_size: int, pad_token_id: int):
        info = json.loads((Path(folder) / TOKENS_INFO_FILE).read_text())
        self.tokens, self.texts = info["tokens"], info["texts"]
        self.block_size, self.pad = block_size, pad_token_id
        self.path = Path(folder) / TOKENS_FILE
        self._stream = None  # opened lazily, in the process (or DataLoader worker) that reads it

    def __len__(self) -> int:
        return -(-self.tokens // self.block_size)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self._stream is None:
            self._stream = np.memmap(self.path, dtype="<u4", mode="r", shape=(self.tokens,))
        start = index * self.block_size
        ids = np.asarray(self._stream[start : start + self.block_size], dtype=np.int64)
        mask = np.ones(self.block_size, dtype=np.int64)
        if len(ids) < self.block_size:  # the last block: padded, its padding masked
            mask[len(ids) :] = 0
            ids = np.concatenate([ids, np.full(self.block_size - len(ids), self.pad, dtype=np.int64)])
        labels = np.where(mask == 1, ids, IGNORE)
        return {
            "input_ids": torch.from_numpy(ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(mask),
        }
