"""The machine the models run on, and the one rule for the precision they compute in.

bfloat16 only where the GPU computes it natively (compute capability 8.0 and up); a T4 claims bf16
support through emulation, several times slower than float16, so that claim is not asked. Neither
torch nor TensorFlow is imported at module level."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass

NATIVE_BF16 = (8, 0)  # compute capability from which NVIDIA GPUs compute in bfloat16 in hardware
PRECISIONS = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class Device:
    """One kind of accelerator (or the CPU) and how many of it this process sees."""

    kind: str  # "cuda" or "cpu"
    name: str  # e.g. "Tesla T4", "NVIDIA A100-SXM4-40GB", or the CPU's architecture
    compute_capability: tuple[int, int] | None  # (major, minor) of a CUDA GPU; None on a CPU
    memory_gib: float | None  # memory of one GPU in GiB (2**30 bytes); None on a CPU
    count: int = 1  # GPUs of this kind visible to the process
    cpu_bf16: bool = False  # a CPU with bfloat16 instructions (AVX512-BF16 or AMX-BF16)


def detect_device() -> Device:
    """The first CUDA GPU torch sees (with how many there are), else the CPU; the CPU also when
    torch is not installed."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        return Device("cpu", platform.processor() or platform.machine(), None, None, cpu_bf16=cpu_computes_bf16())
    if not torch.cuda.is_initialized():
        # Asking torch for the properties would start CUDA in this process, and accelerate's notebook
        # launcher (notebook 06 on several GPUs) refuses to fork once it has started: ask the driver.
        listed = nvidia_smi_gpus()
        if listed:
            name, memory, capability = listed[0]
            return Device("cuda", name, capability, memory, torch.cuda.device_count())
    properties = torch.cuda.get_device_properties(0)
    return Device(
        "cuda",
        properties.name,
        tuple(torch.cuda.get_device_capability(0)),
        properties.total_memory / 2**30,
        torch.cuda.device_count(),
    )


def precision_for(device: Device) -> str:
    """``"bf16"`` on a GPU with native bfloat16 (compute capability >= 8.0), ``"fp16"`` on an older GPU, ``"fp32"`` on a CPU."""
    if device.kind != "cuda":
        return "fp32"
    if device.compute_capability is not None and tuple(device.compute_capability) >= NATIVE_BF16:
        return "bf16"
    return "fp16"


# /proc/cpuinfo flag -> name: the instruction sets that decide how fast the models train on a CPU
INSTRUCTION_SETS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI",
                    "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}  # fmt: skip


def cpu_info(field: str) -> str:
    """The first ``field`` line of Linux's /proc/cpuinfo (``flags``, ``model name``); "" where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            return next((line.partition(":")[2].strip() for line in file if line.startswith(field)), "")
    except OSError:
        return ""


def instruction_sets() -> list[str]:
    """The vector instruction sets of :data:`INSTRUCTION_SETS` this CPU has, in that order."""
    flags = set(cpu_info("flags").split())
    return [name for flag, name in INSTRUCTION_SETS.items() if flag in flags]


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16); False where it cannot tell."""
    return bool({"AVX512-BF16", "AMX-BF16"} & set(instruction_sets()))


def training_precision(device: Device) -> str:
    """A transformer's mixed training precision: :func:`precision_for` on a GPU; on a CPU ``"bf16"``
    autocast where it has bfloat16 instructions, else ``"fp32"``."""
    if device.kind == "cpu":
        return "bf16" if device.cpu_bf16 else "fp32"
    return precision_for(device)


def chosen_precision(wanted: str, device: Device) -> str:
    """``wanted`` (``"bf16"``, ``"fp16"`` or ``"fp32"``), or :func:`training_precision` for ``"auto"``.
    fp16 needs a CUDA GPU (a CPU has no fast float16 matrix products)."""
    if wanted == "auto":
        return training_precision(device)
    if wanted not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {', '.join(PRECISIONS)}, not {wanted!r}")
    if wanted == "fp16" and device.kind != "cuda":
        raise ValueError("precision fp16 needs a CUDA GPU; on a CPU use auto, bf16 or fp32")
    return wanted


@dataclass(frozen=True)
class Launch:
    """Which process of how many this is, as ``torchrun`` and ``accelerate launch`` tell their
    processes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process of one when neither started it."""

    rank: int = 0
    processes: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.processes > 1

    @property
    def main(self) -> bool:
        """The process that writes shared files and prints results (rank 0)."""
        return self.rank == 0


def join_processes() -> Launch:
    """Start the process group of a torchrun / accelerate run once (NCCL on GPUs, gloo on CPUs); nothing
    for one process. Returns :func:`launch`."""
    here = launch()
    if here.distributed:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            cuda = torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(here.local_rank)
            dist.init_process_group("nccl" if cuda else "gloo")
    return here


def wait_for_processes() -> None:
    """Wait until every process of the run gets here (nothing for a single process)."""
    if launch().distributed:
        import torch.distributed as dist

        dist.barrier()


def launch() -> Launch:
    """This process's place in a ``torchrun`` / ``accelerate launch`` run, from the environment."""
    return Launch(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def torch_dtype_name(precision: str) -> str:
    """The torch dtype (an attribute of ``torch``) that weights take in ``precision``:
    ``"bfloat16"``, ``"float16"`` or ``"float32"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[precision]


def memory_gib() -> float | None:
    """Physical memory of this machine in GiB (2**30 bytes), to 0.1; None where the OS does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def nvidia_smi_gpus(run=subprocess.run) -> list[tuple[str, float, tuple[int, int]]]:
    """``(name, memory in GiB, compute capability)`` of each NVIDIA GPU, from ``nvidia-smi`` (no CUDA
    started); none without the tool or with a driver too old to report the capability."""
    try:
        listed = run(
            ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in listed.stdout.splitlines() if listed.returncode == 0 else []:
        try:
            name, memory, capability = (part.strip() for part in line.split(","))
            major, minor = capability.split(".")
            gpus.append((name, float(memory) / 1024, (int(major), int(minor))))
        except ValueError:
            return []
    return gpus


def describe_machine() -> dict:
    """Where a measurement was taken: ``cpu`` (model), ``instruction_sets`` (:func:`instruction_sets`),
    ``cpu_cores``, ``memory_gib`` (GiB), ``gpu`` (names, or None), ``platform`` (OS) and ``python``."""
    gpus = [name for name, _, _ in nvidia_smi_gpus()]
    return {
        "cpu": cpu_info("model name") or platform.processor() or platform.machine(),
        "instruction_sets": instruction_sets(),
        "cpu_cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpu": ", ".join(gpus) if gpus else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
