"""The original study's fine-tuning tool, aitextgen 0.6.0, run in its own environment (it cannot
share one with today's transformers): :func:`run_aitextgen` starts ``scripts/aitextgen_worker.py`` with that
environment's Python (``bash scripts/setup_aitextgen.sh`` builds ``.venv-aitextgen``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from adgen_utils.layout import repository_root
from adgen_utils.settings import OFFLINE_MODEL, ORIGINAL_PROMPTS

AITEXTGEN_VENV = ".venv-aitextgen"


def aitextgen_python() -> Path:
    """aitextgen's Python: ``$ADGEN_AITEXTGEN_PYTHON``, else ``.venv-aitextgen/bin/python`` here."""
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
    output_dir,
    model: str = "tiny",
    steps: int = 100,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    block_size: int = 64,
    prompts: Sequence[str] = ORIGINAL_PROMPTS,
    seed: int = 0,
    python=None,
) -> dict:
    """Fine-tune with aitextgen, as the original did, in a child process of its own environment.
    ``model``: ``"tiny"``, a Hub id, ``"smollm2-135m"`` or a folder. Returns the worker's JSON report."""
    texts = [t.strip() for t in train_texts]
    if not texts or any(not t or "\n" in t for t in texts):
        raise ValueError("aitextgen trains on one ad per line: give non-empty ads without newlines")
    python = Path(python) if python else aitextgen_python()
    if model == OFFLINE_MODEL:
        from adgen_utils.transformer.pretrained import ensure_offline_default

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
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONNOUSERSITE": "1"}
    environment.pop("PYTHONPATH", None)  # keep the main environment's packages out
    worker = repository_root() / "scripts" / "aitextgen_worker.py"
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
