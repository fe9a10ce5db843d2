"""Time and peak-memory estimates for long work, on the hardware a notebook sees.

Each notebook prints one before it trains or scores for long, and a notebook run on its own uses
them to decide whether to rebuild a missing earlier stage or to say which notebook to run first.

The CPU figures are fitted to this project's benchmarks on a 2-core machine (README, `adgen bench
lstm` and `adgen bench finetune`) and scaled by the core count. The GPU figures are each card's
published peak 16-bit tensor throughput and memory bandwidth times a utilisation typical of the
workload; no GPU was available to measure them, so read them as a guide to within a factor of two.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import SimpleNamespace

from adgen_utils.hardware import Device, detect_device, precision_for
from adgen_utils.parameters import LSTM_INPUTS
from adgen_utils.series.profiles import profile_values

GIB = 2**30


@dataclass(frozen=True)
class Throughput:
    """What a device sustains: ``flops`` (FLOP/s) for the LSTMs' and transformers' matrix work,
    and ``bandwidth`` (bytes/s) for the memory-bound softmax and optimizer passes."""

    lstm_flops: float
    transformer_flops: float
    bandwidth: float


# Peak dense 16-bit tensor TFLOP/s and memory GB/s of the GPUs people get on Colab, Kaggle and servers.
GPU_SPECS = {
    "T4": (65, 320),
    "P100": (19, 732),
    "V100": (125, 900),
    "L4": (121, 300),
    "A10": (125, 600),
    "A100": (312, 1555),
    "H100": (989, 3350),
    "H200": (989, 4800),
}
# Share of the peak each workload reaches: cuDNN LSTMs on small batches are far from the peak;
# transformer training with fused kernels reaches about a third; QLoRA dequantizes 4-bit weights
# and recomputes activations (calibrated to ~3 h for 6M GPT-Neo-1.3B tokens on a T4).
LSTM_UTILISATION, TRANSFORMER_UTILISATION, QLORA_UTILISATION, BANDWIDTH_UTILISATION = 0.15, 0.30, 0.06, 0.6
# Fitted on this project's 2-core CPU: LSTM matrix work, transformer training (SmolLM2-135M at
# 142 tokens/s), and ~10 GB/s of effective memory traffic for the softmax and Adam passes.
CPU_2_CORES = Throughput(lstm_flops=2.2e11, transformer_flops=1.15e11, bandwidth=1.0e10)
# Transformer training in bf16 autocast on a CPU with bfloat16 instructions, against float32
# (hardware.training_precision): 2.58 against 4.5 s per step of 8 x 64 tokens for SmolLM2-135M over
# 10 steps on this project's 2 cores; adgen bench finetune's packed_bf16 way found more (2.9x), with
# noisy float32 runs, so the estimate keeps the lower figure.
CPU_BF16_SPEEDUP = 1.75
# Bytes moved per output class per prediction (softmax, its gradient) and per parameter per step (Adam).
SOFTMAX_BYTES_PER_CLASS, ADAM_BYTES_PER_PARAMETER = 78, 120


def throughput(device: Device) -> Throughput:
    """The sustained rates of ``device`` (a GPU by its name; a CPU by its core count)."""
    if device.kind != "cuda":
        cores = os.cpu_count() or 2
        scale = max(cores, 1) / 2
        return Throughput(
            CPU_2_CORES.lstm_flops * scale, CPU_2_CORES.transformer_flops * scale, CPU_2_CORES.bandwidth * min(scale, 4)
        )
    key = next((k for k in sorted(GPU_SPECS, key=len, reverse=True) if k in device.name.upper()), "T4")
    tflops, gbps = GPU_SPECS[key]
    if precision_for(device) == "fp32" or (device.compute_capability or (0, 0)) < (7, 0):
        tflops /= 4  # no tensor cores
    peak = tflops * 1e12 * device.count
    return Throughput(
        peak * LSTM_UTILISATION, peak * TRANSFORMER_UTILISATION, gbps * 1e9 * BANDWIDTH_UTILISATION * device.count
    )


@dataclass(frozen=True)
class Estimate:
    """Estimated wall time (seconds) and peak memory (GiB: GPU memory on a GPU, RAM on a CPU);
    ``method`` is the fine-tuning method it assumes, if any."""

    what: str
    seconds: float
    peak_gib: float
    device: Device
    method: str | None = None

    def __str__(self) -> str:
        where = (
            f"{self.device.name} ({precision_for(self.device)})"
            if self.device.kind == "cuda"
            else f"this CPU ({os.cpu_count()} cores)"
        )
        memory = "GPU memory" if self.device.kind == "cuda" else "memory"
        fits = ""
        if self.device.memory_gib and self.peak_gib > self.device.memory_gib:
            fits = f" (more than the {self.device.memory_gib:.0f} GiB there: lower the batch size)"
        return f"{self.what}: about {format_duration(self.seconds)} and {self.peak_gib:.1f} GiB of {memory} on {where}{fits}"


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``2.3 h``."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def lstm_flops_per_prediction(config, vocabulary_size: int, training: bool = True) -> float:
    """FLOPs of one prediction (one target token): forward, times 3 with the backward pass.
    One-hot inputs cost a vocabulary-wide matrix product per token; the output layer covers
    ``config.sampled + 1`` classes with the sampled softmax in training, all of them otherwise."""
    gates = 4 * config.units
    first_input = vocabulary_size if config.input == "one_hot" else config.embedding_dim
    forward = 2 * gates * (first_input + config.units)
    forward += (config.layers - 1) * 2 * gates * 2 * config.units
    classes = config.sampled + 1 if training and config.loss == "sampled" else vocabulary_size
    forward += 2 * config.units * classes
    return 3 * forward if training else forward


def lstm_parameters(config, vocabulary_size: int) -> int:
    """Trainable parameters of :func:`adgen_utils.lstm.build_model`'s model."""
    gates = 4 * config.units
    first_input = vocabulary_size if config.input == "one_hot" else config.embedding_dim
    total = 0 if config.input == "one_hot" else vocabulary_size * config.embedding_dim
    for layer in range(config.layers):
        width = first_input if layer == 0 else config.units
        total += gates * (width + config.units + 1)
    return total + config.units * vocabulary_size + vocabulary_size


def lstm_training(
    config,
    vocabulary_size: int,
    train_predictions: int,
    validation_predictions: int,
    time_steps: int = 64,
    device: Device | None = None,
) -> Estimate:
    """Training ``config.epochs`` epochs, each a pass over ``train_predictions`` target tokens plus
    a validation pass over ``validation_predictions``; ``time_steps`` is the longest ad."""
    device = device or detect_device()
    rate = throughput(device)
    parameters = lstm_parameters(config, vocabulary_size)
    predictions_per_step = max(config.batch_size * 24, 1)  # ~24 targets per ad in this corpus
    classes = config.sampled + 1 if config.loss == "sampled" else vocabulary_size
    train_step = (
        lstm_flops_per_prediction(config, vocabulary_size) / rate.lstm_flops
        + (classes * SOFTMAX_BYTES_PER_CLASS + parameters * ADAM_BYTES_PER_PARAMETER / predictions_per_step)
        / rate.bandwidth
    )
    validation_step = (
        lstm_flops_per_prediction(config, vocabulary_size, training=False) / rate.lstm_flops
        + vocabulary_size * SOFTMAX_BYTES_PER_CLASS / 3 / rate.bandwidth
    )
    seconds = config.epochs * (train_predictions * train_step + validation_predictions * validation_step)
    bytes_per_value = 2 if precision_for(device) != "fp32" else 4
    activations = (
        config.batch_size
        * time_steps
        * (
            classes * 4 * 2  # logits and their gradient, float32
            + (vocabulary_size * bytes_per_value if config.input == "one_hot" else 0)
            + config.layers * 4 * config.units * bytes_per_value * 6
        )
    )
    validation = min(1.0 * GIB, config.batch_size * time_steps * vocabulary_size * 4 * 3)  # chunked: at most 1 GiB
    peak = parameters * 16 + activations + validation
    return Estimate("training", seconds, peak / GIB, device)


def finetune_training(
    parameters: int,
    train_tokens: int,
    method: str,
    epochs: float = 1.0,
    validation_tokens: int = 0,
    evaluations: int = 1,
    device: Device | None = None,
    tokens_per_step: int = 2048,
    vocabulary_size: int = 50_257,
) -> Estimate:
    """Fine-tuning a ``parameters``-weight transformer on ``train_tokens`` tokens for ``epochs``,
    with ``evaluations`` passes over ``validation_tokens``, ``tokens_per_step`` tokens per device
    step. Training costs 6 FLOPs per parameter and token (forward, backward). Memory: the weights
    and optimizer state of ``method`` (as ``finetune.memory_estimates_gib``), the float32 logits
    with their gradient, and the activations (recomputed layer by layer with LoRA/QLoRA on a GPU)."""
    device = device or detect_device()
    rate = throughput(device)
    flops = 6 * parameters * train_tokens * epochs + 2 * parameters * validation_tokens * evaluations
    speed = rate.transformer_flops
    if device.kind == "cpu" and device.cpu_bf16:
        speed *= CPU_BF16_SPEEDUP
    if method == "qlora" and device.kind == "cuda":
        speed *= QLORA_UTILISATION / TRANSFORMER_UTILISATION
    bytes_per_parameter = {"full": 16, "lora": 2 + 0.16, "qlora": 0.55 + 0.16}[method]
    width = (parameters * 85 / 12) ** (1 / 3)  # a transformer of N weights is ~12·L·h² with L ≈ h/85
    depth = parameters / (12 * width**2)
    checkpointed = method != "full" and device.kind == "cuda"
    activations = tokens_per_step * (12 * vocabulary_size + (2 if checkpointed else 34) * width * depth)
    return Estimate(
        f"fine-tuning ({method})", flops / speed, (parameters * bytes_per_parameter + activations) / GIB, device, method
    )


def transformer_scoring(parameters: int, tokens: int, device: Device | None = None) -> Estimate:
    """Scoring or generating ``tokens`` tokens with a ``parameters``-weight transformer (forward only)."""
    device = device or detect_device()
    bytes_per_weight = 4 if precision_for(device) == "fp32" else 2
    seconds = 2 * parameters * tokens / throughput(device).transformer_flops
    return Estimate("scoring", seconds, parameters * bytes_per_weight * 1.2 / GIB + 0.5, device)


def steps(tokens: int, batch_size: int, block_size: int, gradient_accumulation: int = 1, epochs: float = 1.0) -> int:
    """Optimizer steps of a fine-tune over ``tokens`` packed tokens."""
    return max(1, math.ceil(tokens * epochs / (batch_size * block_size * gradient_accumulation)))


# The full corpus as notebooks 02-04 see it under the full profile: ~2.5M distinct ads, 80% of them
# training ads of ~25 predictions each, and a vocabulary capped at 100k words.
FULL_CORPUS_TRAIN_ADS, FULL_CORPUS_VALIDATION_ADS = 2_000_000, 250_000
FULL_CORPUS_TRAIN_PREDICTIONS = FULL_CORPUS_TRAIN_ADS * 25
FULL_CORPUS_VALIDATION_PREDICTIONS = FULL_CORPUS_VALIDATION_ADS * 25
FULL_CORPUS_VOCABULARY = 100_000
# GPUs people fine-tune on: Colab's free T4 and its paid L4 and A100.
COLAB_GPUS = {
    "T4": Device("cuda", "Tesla T4", (7, 5), 15.0),
    "L4": Device("cuda", "NVIDIA L4", (8, 9), 22.5),
    "A100": Device("cuda", "NVIDIA A100-SXM4-40GB", (8, 0), 40.0),
}


def auto_method(parameters: int, device: Device, headroom: float = 0.7) -> str:
    """What ``method="auto"`` fine-tunes with: fully on a CPU or where fp32 weights, gradients and
    Adam moments (16 bytes per parameter) fit ``headroom`` of the GPU, else 4-bit QLoRA."""
    if device.kind != "cuda" or parameters * 16 / GIB <= headroom * (device.memory_gib or 0):
        return "full"
    return "qlora"


# Parameters of the models the profiles name, so an estimate needs no download.
KNOWN_PARAMETERS = {
    "tiny": 200_000,
    "smollm2-135m": 134_515_008,
    "gpt2": 124_439_808,
    "EleutherAI/gpt-neo-125M": 125_198_592,
    "EleutherAI/gpt-neo-1.3B": 1_315_575_808,
    "gpt2-xl": 1_557_611_200,
}
TOKENS_PER_AD = 40  # model tokens of an ad and its end-of-text token, GPT-2-style BPE (measured ~38-42)


def notebook_finetune(
    values: dict, train_ads: int, validation_ads: int, device: Device | None = None, method: str | None = None
) -> Estimate:
    """Notebook 06's fine-tune with its parameters ``values`` on a split of ``train_ads`` and
    ``validation_ads`` ads (``max_train_ads`` / ``validation_ads`` cap them). ``method`` defaults to
    the parameter, "auto" resolved as :func:`auto_method` would on ``device``. An unknown base model
    is taken to be as large as GPT-Neo-1.3B."""
    device = device or detect_device()
    parameters = KNOWN_PARAMETERS.get(values["base_model"], KNOWN_PARAMETERS["EleutherAI/gpt-neo-1.3B"])
    method = method or values["method"]
    method = auto_method(parameters, device) if method == "auto" else method
    if values["max_train_ads"] is not None:
        train_ads = min(train_ads, values["max_train_ads"])
    if values["validation_ads"] is not None:
        validation_ads = min(validation_ads, values["validation_ads"])
    tokens = train_ads * TOKENS_PER_AD
    per_step = values["batch_size"] * values["block_size"] * values["gradient_accumulation"]
    if values["max_steps"] > 0:  # the Trainer then runs exactly max_steps, cycling through the blocks
        total_steps, tokens, epochs = values["max_steps"], values["max_steps"] * per_step, 1.0
    else:
        epochs = values["epochs"]
        total_steps = steps(tokens, values["batch_size"], values["block_size"], values["gradient_accumulation"], epochs)
    evaluations = 2 + (total_steps // values["eval_steps"] if values["eval_steps"] else math.ceil(epochs))
    return finetune_training(
        parameters,
        tokens,
        method,
        epochs,
        validation_ads * TOKENS_PER_AD,
        evaluations,
        device,
        tokens_per_step=values["batch_size"] * values["block_size"],
    )


def profile_estimate(profile: str, notebook: str, device: Device, method: str | None = None) -> Estimate:
    """The training estimate of notebook 03, 04 or 06 under ``profile`` (the full corpus) on
    ``device``; ``method`` (06 only) as ``finetune.choose_method`` would pick it there if None."""

    values = profile_values(profile, notebook)
    if notebook in LSTM_INPUTS:
        config = SimpleNamespace(**{"embedding_dim": 0, **values, "input": LSTM_INPUTS[notebook]})
        return lstm_training(
            config,
            FULL_CORPUS_VOCABULARY,
            FULL_CORPUS_TRAIN_PREDICTIONS,
            FULL_CORPUS_VALIDATION_PREDICTIONS,
            64,
            device,
        )
    return notebook_finetune(values, FULL_CORPUS_TRAIN_ADS, FULL_CORPUS_VALIDATION_ADS, device, method)


# ---------------------------------------------------------------------------------------------
# Several GPUs: data parallel (DDP) and sharded (FSDP) fine-tuning
# ---------------------------------------------------------------------------------------------

# Share of the linear speed-up data parallelism keeps on one machine: every step ends with an
# all-reduce of the gradients (NCCL over PCIe on 2 x T4, NVLink on an 8-GPU server). A guide.
DDP_EFFICIENCY = 0.9
SERVERS = {  # what people fine-tune on past one GPU: (device, processes)
    "1 x T4 (Colab)": (COLAB_GPUS["T4"], 1),
    "2 x T4 (Kaggle)": (COLAB_GPUS["T4"], 2),
    "8 x A100 80 GB": (Device("cuda", "NVIDIA A100-SXM4-80GB", (8, 0), 80.0), 8),
}
FULL_CORPUS_DISTINCT_ADS = 2_500_000


def distributed_finetune(
    parameters: int, ads: int, device: Device, processes: int, method: str | None = None, fsdp: bool = False
) -> Estimate:
    """One epoch of fine-tuning a ``parameters``-weight transformer on ``ads`` ads over ``processes``
    GPUs like ``device``: :func:`finetune_training` divided by ``processes`` at
    :data:`DDP_EFFICIENCY`. Memory per GPU: data parallel, each GPU holds what one GPU would; with
    ``fsdp`` (full fine-tuning) the weights, gradients and optimizer state are split between them."""
    method = method or auto_method(parameters, device)
    single = finetune_training(parameters, ads * TOKENS_PER_AD, method, device=device)
    seconds = single.seconds / (processes * DDP_EFFICIENCY) if processes > 1 else single.seconds
    peak = single.peak_gib
    if fsdp and method == "full":
        peak -= parameters * 16 / GIB * (1 - 1 / processes)
    where = f"{processes} x {device.name}" if processes > 1 else device.name
    return Estimate(f"fine-tuning ({method}{', FSDP' if fsdp else ''}) on {where}", seconds, peak, device, method)
