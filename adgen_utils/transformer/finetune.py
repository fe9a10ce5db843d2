"""Fine-tuning a pretrained causal LM on the ads with the transformers ``Trainer``, in numbered steps.

:func:`finetune` (``adgen finetune``, also under ``torchrun``) runs the steps below in order. Training
never imports the evaluation side: the caller passes ``score``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback
from transformers.utils.notebook import NotebookProgressCallback

from adgen_utils.corpus.data import load_dataset, validation_ads
from adgen_utils.corpus.facts import head_segment, keywords_from
from adgen_utils.hardware import (
    chosen_precision,
    describe_machine,
    detect_device,
    join_processes,
    launch,
    wait_for_processes,
)
from adgen_utils.layout import (
    CHECKPOINTS_FOLDER,
    DATA_FOLDER,
    FINETUNE_RESULT_FILE,
    FINETUNED,
    HISTORY_FILE,
    MODELS_FOLDER,
    PLAN_FILE,
    QUALITY_CURVE_FILE,
    TOKENS_FOLDER,
    model_dir,
)
from adgen_utils.logs import say
from adgen_utils.models import CURVE_COLUMNS, CURVE_METRICS
from adgen_utils.pace import Plan, load_plan, plan, refuse_long_rebuild, save_plan, seconds_per_step
from adgen_utils.settings import Finetune
from adgen_utils.transformer.pretrained import CATEGORY_SEPARATOR, keyword_line, load_causal_lm, resolve_model
from adgen_utils.transformer.stream import (
    TokenFileBlocks,
    in_chunks,
    prepare_token_file,
)

# Score = the validation ads scored as notebook 07 scores them: a dict with ``loss`` (nats per model
# token), ``ads`` and every name of CURVE_METRICS.
Score = Callable[[object, object], dict]
# The settings that change the trained model; the others (prompts, figures...) do not.
TRAINING_FIELDS = [
    "base_model",
    "method",
    "category_prefix",
    "keyword_examples",
    "max_train_ads",
    "validation_ads",
    "block_size",
    "batch_size",
    "gradient_accumulation",
    "epochs",
    "max_steps",
    "learning_rate",
    "eval_steps",
    "minutes",
    "precision",
    "seed",
]
WARMUP = 0.05  # share of the steps over which the learning rate rises to its peak


# 1. The ads and the base model ------------------------------------------------------------


def read_training_ads(settings: Finetune, run_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training ads (the first ``max_train_ads`` of the split) and the validation ads every
    quality curve scores (``validation_ads`` drawn at random: :func:`adgen_utils.corpus.data.validation_ads`)."""
    train = load_dataset(Path(run_dir) / DATA_FOLDER, split="train")
    train = train if settings.max_train_ads is None else train.head(settings.max_train_ads)
    return train, validation_ads(run_dir, settings.validation_ads)


def training_texts(
    ads: pd.DataFrame, category_prefix: bool = False, keyword_examples: bool = False, seed: int = 0
) -> list[str]:
    """The texts to train on: each ad, or ``"<category> | <ad>"`` with ``category_prefix``. With
    ``keyword_examples``, each ad that states facts (a size, a material, a colour, what it fits)
    comes a second time after a :func:`~adgen_utils.transformer.pretrained.keyword_line` of 1 to 3 of
    them, drawn with ``seed``: "keywords -> ad" examples beside the plain ads, in the same words."""
    texts = (
        [f"{c}{CATEGORY_SEPARATOR}{a}" for a, c in zip(ads["ad"], ads["category"])]
        if category_prefix
        else ads["ad"].tolist()
    )
    if not keyword_examples:
        return texts
    rng = random.Random(seed)
    mixed = []
    for ad, text in zip(ads["ad"], texts):
        mixed.append(text)
        keywords = keywords_from(ad, head_segment(ad), most=rng.randint(1, 3), rng=rng)
        if keywords:
            mixed.append(keyword_line(keywords) + text)
    return mixed


def base_model_path(settings: Finetune, run_dir):
    """Where ``settings.base_model`` loads from (:func:`resolve_model`; ``tiny`` is built in
    ``run_dir/models`` on the run's training ads). Under torchrun the main process makes it first."""
    here = join_processes()

    def resolve():
        ads = load_dataset(Path(run_dir) / DATA_FOLDER, split="train")
        return resolve_model(settings.base_model, Path(run_dir) / MODELS_FOLDER, ads["ad"].tolist())

    path = resolve() if here.main else None
    wait_for_processes()
    return path if here.main else resolve()


# 2. Finished already? ---------------------------------------------------------------------


def training_record(settings: Finetune, model_path, train_texts: int, fsdp: bool = False) -> dict:
    """What makes a fine-tuned model what it is: recorded in ``finetune.json`` as ``settings``."""
    config = {name: getattr(settings, name) for name in TRAINING_FIELDS}
    return {"model": str(model_path), "config": {**config, "fsdp": fsdp}, "train_texts": train_texts}


@dataclass
class FinetuneResult:
    """A finished fine-tune: the model folder, its history (epoch, step, train_loss, eval_loss,
    eval_perplexity; the first row is before training) and ``finetune.json``'s summary."""

    model_dir: Path
    history: pd.DataFrame
    summary: dict = field(default_factory=dict)

    @property
    def perplexity_before(self) -> float:
        return float(self.history["eval_perplexity"].dropna().iloc[0])

    @property
    def perplexity_after(self) -> float:
        return float(self.history["eval_perplexity"].dropna().iloc[-1])


def finished_result(output_dir, record: dict) -> FinetuneResult | None:
    """The model already trained in ``output_dir`` with ``record``'s settings, or None when there is
    none yet. A model trained with other settings raises FileExistsError."""
    path = Path(output_dir) / FINETUNE_RESULT_FILE
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("settings") != record:
        raise FileExistsError(f"{output_dir} holds a fine-tune with other settings; remove it or pick another folder")
    return FinetuneResult(Path(output_dir), pd.read_csv(Path(output_dir) / HISTORY_FILE), summary)


# 3. Full, LoRA or QLoRA -------------------------------------------------------------------


def count_parameters(name_or_path) -> int:
    """Parameters of a model, counted from its config without allocating weights."""
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def memory_estimates_gib(parameters: int, lora_fraction: float = 0.01) -> dict[str, float]:
    """GPU memory (GiB) for weights and optimizer, before activations: full 16 bytes a parameter; lora
    2 + 16 per trainable (``lora_fraction``); qlora ~0.55 + the same adapters."""
    adapters = parameters * lora_fraction * 16
    return {
        "full": parameters * 16 / 2**30,
        "lora": (parameters * 2 + adapters) / 2**30,
        "qlora": (parameters * 0.55 + adapters) / 2**30,
    }


def choose_method(
    parameters: int, requested: str = "auto", gpu_memory_gib: float | None = None, headroom: float = 0.7
) -> tuple[str, str]:
    """``(method, reason)``: ``auto`` is full on a CPU or where it fits ``headroom`` of the GPU, else
    QLoRA with bitsandbytes, else LoRA."""
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
    too_big = f"full fine-tuning needs ~{estimates['full']:.1f} GiB > {budget:.1f} GiB of the GPU"
    try:
        import bitsandbytes  # noqa: F401

        return "qlora", f"{too_big}: 4-bit QLoRA (~{estimates['qlora']:.1f} GiB)"
    except ImportError:
        return (
            "lora",
            f"{too_big}: LoRA on 16-bit weights (~{estimates['lora']:.1f} GiB; bitsandbytes gives 4-bit QLoRA)",
        )


def linear_layer_names(model) -> list[str]:
    """The names of the linear layers of the transformer blocks (they differ between GPT-2, GPT-Neo
    and Llama; GPT-2's are ``Conv1D``), the output layer excluded: LoRA's ``target_modules``."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D") and "lm_head" not in name
        }
    )


def lora_config(model) -> LoraConfig:
    """The LoRA adapters notebook 06 shows: rank 16 on every linear layer of the blocks."""
    return LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=linear_layer_names(model), task_type="CAUSAL_LM"
    )


def load_for_training(model_path, method: str):
    """``(model, tokenizer)`` ready to train: float32 weights (full), 16-bit frozen weights with LoRA
    adapters (lora), or 4-bit weights with adapters (qlora)."""
    if method == "full":
        return load_causal_lm(model_path, dtype=torch.float32)
    if method == "qlora":
        model, tokenizer = load_causal_lm(model_path, load_in_4bit=True)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        model, tokenizer = load_causal_lm(model_path)  # 16-bit on a GPU (hardware.precision_for), float32 on a CPU
        model.enable_input_require_grads()  # gradient checkpointing reaches the adapters through frozen layers
    return get_peft_model(model, lora_config(model)), tokenizer


def training_flops_per_token(model, block_size: int, method: str) -> float:
    """FLOPs (multiply + add = 2) to train on one token of a ``block_size`` block: forward 2 per weight
    plus causal attention, times 3 for full fine-tuning, 2 for LoRA (frozen weights get no gradient)."""
    width, layers = model.config.hidden_size, model.config.num_hidden_layers
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
    return (3 if method == "full" else 2) * (2 * weights + 2 * layers * width * block_size)


# 4. Packed blocks -------------------------------------------------------------------------


def token_file_blocks(texts: Sequence[str], tokenizer, output_dir, block_size: int, record: dict) -> TokenFileBlocks:
    """The texts tokenized once into ``output_dir/checkpoints/tokens`` (reused while ``record`` holds),
    read as packed blocks of ``block_size`` tokens. Under torchrun the main process writes it."""
    folder = Path(output_dir) / CHECKPOINTS_FOLDER / TOKENS_FOLDER
    settings = {**record, "texts_sha256": _texts_digest(texts)}
    if launch().main:
        prepare_token_file(in_chunks(texts), tokenizer, folder, settings)
    wait_for_processes()
    return TokenFileBlocks(folder, block_size, tokenizer.pad_token_id)


def _texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


# 5. Training arguments --------------------------------------------------------------------


def training_arguments(
    settings: Finetune,
    output_dir,
    method: str,
    max_steps: int,
    precision: str,
    progress: bool = True,
    fsdp: bool = False,
) -> TrainingArguments:
    """The ``TrainingArguments`` for one process or torchrun (DDP, gloo on CPUs; FSDP2 with ``fsdp``),
    for ``max_steps`` optimizer steps (the plan's) in ``precision``. ``settings.batch_size`` blocks a
    step in all, so any number of processes trains the same model."""
    processes = launch().processes
    if settings.batch_size % processes:
        raise ValueError(
            f"batch_size {settings.batch_size} blocks cannot be shared evenly by {processes} processes: "
            f"give a multiple of {processes} (-p batch_size=...)"
        )
    if fsdp and (method != "full" or not torch.cuda.is_available()):
        raise ValueError("FSDP shards full fine-tuning over CUDA GPUs: use method='full' on GPUs, or no --fsdp")
    distributed = {"ddp_backend": "gloo"} if processes > 1 and not torch.cuda.is_available() else {}
    if fsdp:
        distributed.update(
            fsdp="full_shard auto_wrap", fsdp_config={"version": 2, "state_dict_type": "FULL_STATE_DICT"}
        )
    return TrainingArguments(
        output_dir=str(Path(output_dir) / CHECKPOINTS_FOLDER),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        max_steps=max_steps,
        learning_rate=settings.learning_rate,
        warmup_steps=WARMUP,
        lr_scheduler_type="linear",
        logging_steps=1,
        eval_strategy="no",
        save_strategy="steps" if settings.eval_steps else "epoch",
        save_steps=settings.eval_steps or 500,
        save_total_limit=2,
        report_to="none",
        disable_tqdm=not progress,
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(),
        optim="adamw_torch",
        activation_checkpointing=method != "full" and torch.cuda.is_available(),
        accelerator_config={"split_batches": True},
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        **distributed,
    )


# 5b. How long: timed here ------------------------------------------------------------------


def steps_per_epoch(settings: Finetune, blocks: int) -> int:
    """Optimizer steps in one pass over ``blocks`` blocks."""
    return max(1, -(-blocks // (settings.batch_size * settings.gradient_accumulation)))


def planned_steps(settings: Finetune, blocks: int) -> int:
    """The optimizer steps ``settings`` ask for: ``max_steps``, or ``epochs`` over ``blocks`` blocks."""
    if settings.max_steps > 0:
        return settings.max_steps
    return max(1, math.ceil(steps_per_epoch(settings, blocks) * settings.epochs))


def evaluations(steps: int, every: int | None, per_epoch: int) -> int:
    """How many times FootingEvaluation scores the validation ads in ``steps`` steps: before training,
    every ``every`` steps (None: every epoch of ``per_epoch`` steps) and after the last step."""
    period = every or per_epoch
    return 1 + steps // period + (1 if steps % period else 0)


def plan_steps(model, tokenizer, blocks, settings: Finetune, precision: str, output_dir, score, timed: int = 5):
    """The optimizer steps to run here (a :class:`adgen_utils.pace.Plan`): the planned ones, or as many
    as fit ``settings.minutes`` with their evaluations.

    A whole optimizer step (forward and backward over ``batch_size`` real blocks, gradient clipping and AdamW's update at
    learning rate 0, which leaves the weights as they are) is timed ``timed`` times after two warm-up steps,
    in ``precision``; one evaluation is timed on ``score.head(10)`` and scaled to all ``score.ads``.
    The plan is kept in the checkpoints folder with the settings, so that a resumed run keeps its
    steps; a different GPU share or accumulation is timed as one step."""
    path = Path(output_dir) / CHECKPOINTS_FOLDER / PLAN_FILE
    key = {name: getattr(settings, name) for name in TRAINING_FIELDS}
    if (saved := load_plan(path, key)) is not None:
        return saved
    device = next(model.parameters()).device
    batch = torch.stack([torch.as_tensor(blocks[i]["input_ids"]) for i in range(min(settings.batch_size, len(blocks)))])
    batch = batch.to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    training = model.training
    model.train()
    # The Trainer's optimizer (optim="adamw_torch") at learning rate 0: it costs its real time, and moves no weight.
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=0.0, weight_decay=0.0)

    def step():
        with autocast:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)  # the Trainer's max_grad_norm
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Two warm-up steps: on a CPU the second is still slow (the first fills AdamW's state), and single steps
    # vary by half; timed once after one warm-up, 2.7 s was planned where the training took 1.95 s a step.
    each = seconds_per_step(step, timed, warmup=2) * settings.gradient_accumulation
    model.eval()
    with torch.no_grad(), autocast:
        sample = score.head(10)
        evaluation = seconds_per_step(lambda: sample(model, tokenizer), timed=1, warmup=0) * score.ads / sample.ads
    model.train(training)
    each, evaluation = _largest_over_processes(each, evaluation)  # every process plans the same steps
    wanted, per_epoch = planned_steps(settings, len(blocks)), steps_per_epoch(settings, len(blocks))
    unit = f"optimizer step of {settings.batch_size * settings.gradient_accumulation} x {settings.block_size} tokens"
    fits = None
    for _ in range(3):  # fewer steps, fewer evaluations: settle the count
        runs = evaluations(fits.chosen if fits else wanted, settings.eval_steps, per_epoch)
        fits = plan(wanted, each, unit, settings.minutes, timed, fixed_seconds=runs * evaluation)
    if launch().main:
        save_plan(fits, path, key)
    return fits


# 6. The trainer and its callbacks ---------------------------------------------------------


class FootingEvaluation(TrainerCallback):
    """Scores the validation ads with ``score`` before training, every ``every`` steps (None: each
    epoch) and at the end, logging ``eval_*`` and the budget so far (``train_seconds``, ``train_flops``)."""

    def __init__(self, score: Score, tokenizer, every, flops_per_step: float, precision: str, show: bool = True):
        self.score, self.tokenizer, self.every = score, tokenizer, every
        self.flops_per_step, self.precision, self.show = flops_per_step, precision, show
        self.seconds, self.began, self.last = 0.0, None, None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        logged = [e for e in state.log_history if "train_seconds" in e]
        self.seconds = float(logged[-1]["train_seconds"]) if logged else 0.0  # resumed: the budget so far
        self.last = logged[-1]["step"] if logged else None
        if state.global_step == 0:
            self.evaluate(args, state, model)

    def on_step_begin(self, args, state, control, **kwargs):
        self.began = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.seconds += time.perf_counter() - self.began
        if (self.every and state.global_step % self.every == 0) or state.global_step >= state.max_steps:
            self.evaluate(args, state, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.every is None and self.last != state.global_step:
            self.evaluate(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.last != state.global_step:  # an epoch ended between evaluations: the final model too
            self.evaluate(args, state, model)

    def evaluate(self, args, state, model) -> dict:
        """Score the validation ads now and log the result (see the class docstring)."""
        training = model.training
        model.eval()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        autocast = torch.autocast(args.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            scores = self.score(model, self.tokenizer)
        model.train(training)
        entry = {
            "epoch": state.epoch or 0.0,
            "step": state.global_step,
            "validation_ads": scores["ads"],
            "eval_loss": float(scores["loss"]),
            **{f"eval_{name}": scores[name] for name in CURVE_METRICS},
            "train_seconds": round(self.seconds, 2),
            "train_flops": state.global_step * self.flops_per_step,
        }
        state.log_history.append(entry)
        self.last = state.global_step
        if self.show and state.is_world_process_zero:
            print(
                f"epoch {entry['epoch']:.2f} · step {state.global_step} · validation loss {entry['eval_loss']:.4f} "
                f"nats/token · perplexity {math.exp(entry['eval_loss']):.2f} · "
                f"{entry['eval_bits_per_char']:.3f} bits/char",
                flush=True,
            )
        return entry


class TimedCheckpoint(TrainerCallback):
    """Asks for a checkpoint after the first optimizer step once ``minutes`` of wall time have passed
    since the last one, whatever the save strategy: an epoch of hours on a Colab GPU then risks at
    most that much work. Under torchrun the processes decide together. ``clock`` returns seconds."""

    def __init__(self, minutes: float = 15.0, clock=time.monotonic):
        self.seconds, self.clock = minutes * 60, clock
        self.last_save = clock()

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_save = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if _largest_over_processes(self.clock() - self.last_save >= self.seconds)[0]:
            control.should_save = True  # the Trainer saves on this flag under any save_strategy
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = self.clock()


class StepProgress(ProgressCallback):
    """A progress bar over optimizer steps that prints no logs (FootingEvaluation prints its own)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def _process_group() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _largest_over_processes(*values: float) -> list[float]:
    """Each of ``values``, the largest over the processes of a distributed run (one tiny all-reduce),
    so that every process decides alike; ``values`` themselves for one process."""
    if not _process_group():
        return list(values)
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    reduced = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.MAX)
    return reduced.tolist()


def evaluations_only(trainer: Trainer) -> None:
    """Replace the Trainer's printers (a line or a table row per logged step) by a plain progress
    bar; the evaluations print their own line."""
    for printer in (ProgressCallback, PrinterCallback, NotebookProgressCallback):
        trainer.remove_callback(printer)
    if not trainer.args.disable_tqdm:
        trainer.add_callback(StepProgress())


def trainer_with_callbacks(
    model,
    tokenizer,
    arguments: TrainingArguments,
    blocks,
    score: Score,
    settings: Finetune,
    method: str,
    precision: str,
    checkpoint_minutes: float = 15.0,
) -> Trainer:
    """The ``Trainer`` of notebook 06: ``blocks`` to train on, :class:`FootingEvaluation` with
    ``score`` every ``settings.eval_steps`` and :class:`TimedCheckpoint`, printing evaluations only."""
    tokens_per_step = settings.batch_size * settings.gradient_accumulation * settings.block_size
    evaluation = FootingEvaluation(
        score,
        tokenizer,
        every=settings.eval_steps,
        flops_per_step=tokens_per_step * training_flops_per_token(model, settings.block_size, method),
        precision=precision,
        show=not arguments.disable_tqdm,
    )
    trainer = Trainer(
        model=model, args=arguments, train_dataset=blocks, callbacks=[evaluation, TimedCheckpoint(checkpoint_minutes)]
    )
    evaluations_only(trainer)
    return trainer


# 7. Train, resuming -----------------------------------------------------------------------


def latest_checkpoint(output_dir) -> str | None:
    """The last complete checkpoint in ``output_dir/checkpoints`` (None: start from the beginning)."""
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    done = [c for c in folder.glob("checkpoint-*") if (c / "trainer_state.json").is_file()]
    return str(max(done, key=lambda c: int(c.name.split("-")[-1]))) if done else None


def train(trainer: Trainer, output_dir) -> str | None:
    """``trainer.train``, from the last checkpoint when there is one; returns that checkpoint's name."""
    resume = latest_checkpoint(output_dir)
    if resume and launch().main and not trainer.args.disable_tqdm:
        say(f"resuming from {Path(resume).name}")
    trainer.train(resume_from_checkpoint=resume)
    return Path(resume).name if resume else None


# 8. Save and record -----------------------------------------------------------------------


def history_table(log_history: list[dict]) -> pd.DataFrame:
    """One row per logged step: epoch, step, train_loss, eval_loss, eval_perplexity."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        row = rows.setdefault(entry.get("step", 0), {"step": entry.get("step", 0), "epoch": 0.0})
        row["epoch"] = entry.get("epoch", row["epoch"])
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        if "eval_loss" in entry:
            row["eval_loss"], row["eval_perplexity"] = entry["eval_loss"], math.exp(entry["eval_loss"])
    table = pd.DataFrame(sorted(rows.values(), key=lambda r: r["step"]))
    return table.reindex(columns=["epoch", "step", "train_loss", "eval_loss", "eval_perplexity"])


def quality_curve(log_history: list[dict]) -> pd.DataFrame:
    """The quality curve (:data:`adgen_utils.models.CURVE_COLUMNS`): one row per evaluation."""
    rows = [
        {
            "step": entry["step"],
            "epoch": entry.get("epoch") or 0.0,
            "train_seconds": entry["train_seconds"],
            "train_flops": entry["train_flops"],
            "validation_ads": entry["validation_ads"],
            **{name: entry[f"eval_{name}"] for name in CURVE_METRICS},
        }
        for entry in log_history
        if "train_seconds" in entry
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def save_finetuned(
    trainer: Trainer,
    tokenizer,
    output_dir,
    record: dict,
    method: str,
    reason: str,
    resumed_from: str | None,
    plan: Plan,
    precision: str,
) -> FinetuneResult:
    """Write the trained model as a plain transformers folder (safetensors, LoRA adapters merged;
    the adapter alone in ``adapter/``), ``quality_curve.csv``, ``history.csv`` and ``finetune.json``,
    then remove the checkpoints. Under torchrun every process calls it and the main one writes."""
    output_dir = Path(output_dir)
    state = trainer.state
    history, peak_rss = history_table(state.log_history), _peak_rss_per_process()
    fsdp = record["config"].get("fsdp")
    if fsdp:
        trainer.save_model(str(output_dir))  # every process takes part in gathering the full weights
    if not launch().main:
        trainer.accelerator.wait_for_everyone()
        return FinetuneResult(output_dir, history, {"settings": record})
    curve = quality_curve(state.log_history)
    curve.to_csv(output_dir / QUALITY_CURVE_FILE, index=False)
    model = trainer.model
    if method != "full":
        model.save_pretrained(output_dir / "adapter")  # the adapter alone, a few MB
        if method == "qlora":  # 4-bit weights cannot take the merge exactly: merge into 16-bit ones
            model = PeftModel.from_pretrained(load_causal_lm(record["model"])[0], output_dir / "adapter")
        model = model.merge_and_unload()
    if not fsdp:
        model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    evaluated = history["eval_perplexity"].dropna()
    summary = {
        "settings": record,
        "method": method,
        "method_reason": reason,
        "base_model": record["model"],
        "train_tokens": trainer.train_dataset.tokens,
        "train_blocks": len(trainer.train_dataset),
        "processes": launch().processes,
        "peak_rss_mib_per_process": peak_rss,
        "validation_ads": int(curve["validation_ads"].iloc[-1]),
        "steps": state.global_step,
        "epochs": state.epoch,
        "train_seconds": round(float(curve["train_seconds"].iloc[-1]), 1),
        # the whole train() call (steps and evaluations; since the resume, if any) beside the plan's estimate
        "train_wall_seconds": next(
            (e["train_runtime"] for e in reversed(state.log_history) if "train_runtime" in e), None
        ),
        "plan": asdict(plan),
        "precision": precision,
        "machine": describe_machine(),
        "resumed_from": resumed_from,
        "perplexity_before": float(evaluated.iloc[0]),
        "perplexity_after": float(evaluated.iloc[-1]),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available()
        else None,
    }
    history.to_csv(output_dir / HISTORY_FILE, index=False)
    (output_dir / FINETUNE_RESULT_FILE).write_text(json.dumps(summary, indent=2))
    shutil.rmtree(output_dir / CHECKPOINTS_FOLDER, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return FinetuneResult(output_dir, history, summary)


def _peak_rss_per_process() -> list[float]:
    """Every process's peak resident memory (MiB, the OS's own accounting), in rank order."""
    mine = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if not _process_group():
        return [mine]
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, mine)
    return gathered


# The steps in order -----------------------------------------------------------------------


def finetune(
    settings: Finetune,
    run_dir,
    score: Score,
    progress: bool = True,
    fsdp: bool = False,
    checkpoint_minutes: float = 15.0,
) -> FinetuneResult:
    """Fine-tune ``settings.base_model`` into ``run_dir/models/finetuned`` (``adgen finetune``, torchrun):
    a finished model with these settings is read back, an interrupted one resumes."""
    output_dir = model_dir(run_dir, FINETUNED)
    train_ads, _ = read_training_ads(settings, run_dir)
    texts = training_texts(train_ads, settings.category_prefix, settings.keyword_examples, settings.seed)
    model_path = base_model_path(settings, run_dir)
    record = training_record(settings, model_path, len(texts), fsdp)
    if (done := finished_result(output_dir, record)) is not None:
        return done
    method, reason = choose_method(count_parameters(model_path), settings.method)
    here = launch()
    if here.distributed and torch.cuda.is_available():
        torch.cuda.set_device(here.local_rank)  # "cuda" is this process's own GPU from now on
    set_seed(settings.seed)
    model, tokenizer = load_for_training(model_path, method)
    precision = chosen_precision(settings.precision, detect_device())
    blocks = token_file_blocks(texts, tokenizer, output_dir, settings.block_size, record)
    steps = plan_steps(model, tokenizer, blocks, settings, precision, output_dir, score)
    if progress and here.main:
        say(f"method: {reason}; {blocks.tokens:,} tokens ({blocks.texts:,} ads) in {len(blocks):,} blocks")
        say(f"{precision}: {steps.describe()}")
    refuse_long_rebuild(steps, "adgen finetune")
    set_seed(settings.seed)  # timing drew random numbers: the training's are the same as without it
    arguments = training_arguments(settings, output_dir, method, steps.chosen, precision, progress, fsdp)
    trainer = trainer_with_callbacks(
        model, tokenizer, arguments, blocks, score, settings, method, precision, checkpoint_minutes
    )
    resumed_from = train(trainer, output_dir)
    return save_finetuned(trainer, tokenizer, output_dir, record, method, reason, resumed_from, steps, precision)
