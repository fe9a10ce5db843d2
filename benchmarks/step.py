"""One fine-tuning step of the offline model, timed: ``python -m benchmarks.step [--precision fp32]``.

Prints JSON: the median seconds of an optimizer step (forward, backward and AdamW's update) of
smollm2-135m over 8 blocks of 64 tokens, full fine-tuning as lesson 06's quick profile trains it,
after one warm-up step, in the given precision (default: the lesson's ``auto``). Issue 19's slow
machine (2-core AMD EPYC, AVX2, no bfloat16) took about 13 s in float32: this is how
``scripts/slow_machine.sh`` is calibrated to it."""

from __future__ import annotations

import argparse
import contextlib
import json

import torch

from adgen_utils.hardware import chosen_precision, describe_machine, detect_device
from adgen_utils.pace import seconds_per_step
from adgen_utils.settings import OFFLINE_MODEL
from adgen_utils.transformer.pretrained import load_causal_lm, resolve_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step", description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="auto", help="auto, bf16 or fp32 (default auto: the lesson's)")
    parser.add_argument("--timed", type=int, default=3, help="steps timed after the warm-up (3)")
    args = parser.parse_args(argv)
    precision = chosen_precision(args.precision, detect_device())
    torch.manual_seed(0)
    model, _ = load_causal_lm(resolve_model(OFFLINE_MODEL), dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    batch = torch.randint(0, model.config.vocab_size, (8, 64))
    dtype = {"bf16": torch.bfloat16}.get(precision)

    def step():
        with torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext():
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    seconds = seconds_per_step(step, timed=args.timed)
    report = {"seconds_per_step": round(seconds, 3), "precision": precision, "threads": torch.get_num_threads()}
    print(json.dumps({**report, "machine": describe_machine()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
