"""The one precision rule, on the GPUs Colab and Kaggle lend (simulated through torch.cuda) and the
CPU, and the places that apply it: loading and fine-tuning a transformer."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from adgen_utils import hardware
from adgen_utils.hardware import Device
from adgen_utils.transformer import finetune, pretrained

GPUS = [  # name, compute capability, the precision it should compute in
    ("Tesla P100-PCIE-16GB", (6, 0), "fp16"),
    ("Tesla V100-SXM2-16GB", (7, 0), "fp16"),
    ("Tesla T4", (7, 5), "fp16"),
    ("NVIDIA A100-SXM4-40GB", (8, 0), "bf16"),
    ("NVIDIA L4", (8, 9), "bf16"),
    ("NVIDIA H100 80GB HBM3", (9, 0), "bf16"),
]
CPU = Device("cpu", "x86_64", None, None)


def simulate_gpu(monkeypatch, name: str, capability: tuple[int, int], memory_gib: float = 15.0, count: int = 1):
    """Make torch report ``count`` CUDA GPUs of this kind; like a real T4, is_bf16_supported() says
    True for any GPU unless emulation is excluded."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device=None: SimpleNamespace(name=name, total_memory=int(memory_gib * 2**30)),
    )
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or capability >= (8, 0)
    )


@pytest.mark.parametrize("name, capability, expected", GPUS)
def test_bf16_only_where_the_gpu_computes_it_natively(name, capability, expected):
    assert hardware.precision_for(Device("cuda", name, capability, 16.0)) == expected


def test_a_cpu_computes_in_float32_and_an_unknown_gpu_in_float16():
    assert hardware.precision_for(CPU) == "fp32"
    assert hardware.precision_for(Device("cuda", "unknown", None, None)) == "fp16"
    assert [hardware.torch_dtype_name(p) for p in ("bf16", "fp16", "fp32")] == ["bfloat16", "float16", "float32"]
    with pytest.raises(ValueError, match="bf16, fp16, fp32"):
        hardware.torch_dtype_name("int8")


def test_detect_device_reads_torch_and_ignores_emulated_bf16(monkeypatch):
    simulate_gpu(monkeypatch, "Tesla T4", (7, 5), memory_gib=14.75, count=2)
    assert torch.cuda.is_bf16_supported()  # what the T4 says, and why it is not asked
    device = hardware.detect_device()
    assert device == Device("cuda", "Tesla T4", (7, 5), 14.75, 2)
    assert hardware.precision_for(device) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = hardware.detect_device()
    assert cpu.kind == "cpu" and cpu.compute_capability is None and cpu.memory_gib is None


@pytest.mark.parametrize("name, capability, expected", GPUS)
def test_loading_and_fine_tuning_follow_the_rule(monkeypatch, name, capability, expected):
    simulate_gpu(monkeypatch, name, capability)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]
    assert pretrained.default_dtype("cuda") is dtype and pretrained.default_dtype("cuda:0") is dtype
    assert pretrained.default_dtype("cpu") is torch.float32  # a model put on the CPU of a GPU machine
    assert hardware.training_precision(hardware.detect_device()) == expected  # TrainingArguments' bf16 / fp16


def test_on_a_cpu_weights_are_float32_and_training_uses_bf16_only_with_its_instructions(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pretrained.default_dtype("cpu") is torch.float32
    for has_bf16, expected in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(hardware, "cpu_computes_bf16", lambda has_bf16=has_bf16: has_bf16)
        assert hardware.detect_device().cpu_bf16 is has_bf16
        assert hardware.precision_for(hardware.detect_device()) == "fp32"  # scoring and generation
        assert hardware.training_precision(hardware.detect_device()) == expected  # bf16 autocast with its instructions


def test_cpu_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    for flags, expected in (("fpu avx2 avx512f avx512_bf16", True), ("fpu sse amx_bf16", True), ("fpu avx2", False)):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        real_open = open
        monkeypatch.setattr(
            "builtins.open",
            lambda path, *a, real_open=real_open, cpuinfo=cpuinfo, **k: real_open(
                cpuinfo if path == "/proc/cpuinfo" else path, *a, **k
            ),
        )
        assert hardware.cpu_computes_bf16() is expected
        monkeypatch.undo()


def test_method_choice_reads_the_gpu_memory_from_the_device(monkeypatch):
    neo_13b = 1_315_575_808  # ~19.6 GiB to fine-tune fully
    simulate_gpu(monkeypatch, "Tesla T4", (7, 5), memory_gib=15.0)
    assert finetune.choose_method(neo_13b)[0] in {"lora", "qlora"}
    simulate_gpu(monkeypatch, "NVIDIA A100-SXM4-80GB", (8, 0), memory_gib=80.0)
    assert finetune.choose_method(neo_13b)[0] == "full"


def test_importing_the_rule_loads_neither_framework():
    code = (
        "import sys, adgen_utils.hardware as h; h.precision_for(h.Device('cpu', 'x', None, None)); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_gpus_are_read_from_nvidia_smi_without_starting_cuda():
    def smi(output, code=0):
        return lambda *a, **k: SimpleNamespace(stdout=output, returncode=code)

    two_t4 = "Tesla T4, 15360, 7.5\nTesla T4, 15360, 7.5\n"
    assert hardware.nvidia_smi_gpus(smi(two_t4)) == [("Tesla T4", 15.0, (7, 5))] * 2
    assert hardware.nvidia_smi_gpus(smi("NVIDIA A100-SXM4-80GB, 81920, 8.0")) == [
        ("NVIDIA A100-SXM4-80GB", 80.0, (8, 0))
    ]
    assert hardware.nvidia_smi_gpus(smi("Field 'compute_cap' is not a valid field", 2)) == []
    assert hardware.nvidia_smi_gpus(smi("Tesla K80, 11441, [N/A]")) == []  # an old driver: ask torch instead


def test_launch_reads_torchrun_and_accelerate_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert hardware.launch() == hardware.Launch(0, 1, 0) and not hardware.launch().distributed
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert hardware.launch() == hardware.Launch(3, 8, 1) and hardware.launch().distributed
    assert not hardware.launch().main
