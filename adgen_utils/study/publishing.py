"""Publish a fine-tuned model on the Hugging Face Hub, with a model card built from its ``finetune.json``.

The Hub token (:func:`find_token`) is never printed, logged or written; Hub errors are re-raised as
:class:`PublishError` with the token scrubbed. Without a token or ``push``, :func:`publish` is a dry run."""

from __future__ import annotations

import json
import mmap
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from adgen_utils.corpus.data import EMBEDDED_FILE, KAGGLE_DATASET
from adgen_utils.errors import PublishError
from adgen_utils.layout import FINETUNE_RESULT_FILE, HISTORY_FILE, REPORT_FILE, SOURCE_FILE
from adgen_utils.models import DECODINGS, FINE_TUNED
from adgen_utils.settings import DEFAULT_DECODING, ORIGINAL_PROMPTS
from adgen_utils.transformer.pretrained import CATEGORY_SEPARATOR

CARD_FILE = "README.md"
TAGS = ["text-generation", "advertising", "product-titles", "adgen"]
# Sampling settings the Hub's inference widget (and the card's snippet) use; max_new_tokens in model tokens.
INFERENCE_PARAMETERS = DECODINGS[DEFAULT_DECODING].generate_arguments()
# Files a Hub user needs to load the model; weights are added by pattern (*.safetensors).
MODEL_FILES = ["config.json", "generation_config.json", "model.safetensors.index.json"]
TOKENIZER_FILES = (
    "tokenizer.json tokenizer_config.json special_tokens_map.json vocab.json merges.txt added_tokens.json "  # noqa: SIM905
    "tokenizer.model chat_template.jinja".split()
)
RECORD_FILES = [FINETUNE_RESULT_FILE, HISTORY_FILE, CARD_FILE]
# Licences of the study's Hub models (their model cards), for bases without an adgen_source.json.
KNOWN_LICENSES = dict.fromkeys(
    ["gpt2", "openai-community/gpt2", "EleutherAI/gpt-neo-125M", "EleutherAI/gpt-neo-1.3B"], "mit"
)
ORIGINAL_STUDY = "nirajsaran2/AdTextGeneration"
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
NO_TOKEN = "no token (HF_TOKEN unset, no Colab secret): dry run"


# Token and repository id ---


def find_token() -> tuple[str | None, str]:
    """``(token, description)`` from ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN`` or the Colab secret, else
    ``(None, reason)``. The description never contains the token."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(name, "").strip()
        if value:
            return value, f"environment variable {name}"
    try:
        from google.colab import userdata
    except ImportError:  # not on Colab
        return None, NO_TOKEN
    try:
        value = (userdata.get("HF_TOKEN") or "").strip()
    except Exception:
        value = ""
    return (value, "Colab secret HF_TOKEN") if value else (None, NO_TOKEN)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a Hub model id ``"owner/name"`` (letters, digits, ``-``, ``_``, ``.``),
    else a ValueError that says what is wrong."""
    if (
        not isinstance(repo_id, str)
        or not _REPO_ID.fullmatch(repo_id)
        or "--" in repo_id
        or ".." in repo_id
        or repo_id.endswith((".", "-"))
    ):
        raise ValueError(
            f"the repository id must look like 'owner/name' (your Hub user or organisation, a slash, "
            f"then the model's name of letters, digits, '-', '_' or '.'), not {repo_id!r}"
        )
    return repo_id


# What the folder holds ---


def _require_model(model_dir: str | Path) -> Path:
    """The folder as a Path, if it holds config.json and safetensors weights; else FileNotFoundError."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"No model folder at {model_dir}")
    missing = [] if (model_dir / "config.json").is_file() else ["config.json"]
    if not any(model_dir.glob("*.safetensors")):
        missing.append("model.safetensors")
    if missing:
        raise FileNotFoundError(
            f"{model_dir} is not a saved transformers model: it lacks {' and '.join(missing)} "
            "(save it with save_pretrained(..., safe_serialization=True))"
        )
    return model_dir


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _contains(path: Path, needle: bytes) -> bool:
    """Whether the file's bytes contain ``needle`` (memory-mapped: weights are not read into memory)."""
    if path.stat().st_size == 0:
        return False
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        return view.find(needle) != -1


def staged_files(model_dir: str | Path, token: str | None = None) -> list[Path]:
    """The files :func:`publish` uploads, sorted: weights, configs, tokenizer files, finetune.json,
    history.csv, README.md (no sub-folders). A file that contains ``token`` raises :class:`PublishError`."""
    model_dir = _require_model(model_dir)
    names = {*MODEL_FILES, *TOKENIZER_FILES, *RECORD_FILES}
    files = sorted(
        p
        for p in model_dir.iterdir()
        if p.is_file() and not p.is_symlink() and (p.name in names or p.suffix == ".safetensors")
    )
    if token:
        leaking = [p.name for p in files if _contains(p, token.encode())]
        if leaking:
            raise PublishError(f"refusing to upload: {', '.join(leaking)} contain(s) the Hub token")
    return files


# The model card ---


def _base_model(summary: dict) -> dict:
    """The model that was fine-tuned: ``hub_id`` (None if unknown), ``license`` (None if unknown),
    ``name`` and ``note`` (for the card's text), from the base folder's adgen_source.json, or from
    the Hub id it was loaded by. A local path never reaches the card."""
    base = str(summary.get("base_model") or summary.get("settings", {}).get("model") or "")
    if base and Path(base).is_dir():
        source = _read_json(Path(base) / SOURCE_FILE)
        hub_id = source.get("base_model")
        return {
            "hub_id": hub_id,
            "license": source.get("license") or KNOWN_LICENSES.get(hub_id or ""),
            "name": hub_id or source.get("name") or Path(base).name,
            "note": source.get("note"),
        }
    if base:  # a Hub id
        return {"hub_id": base, "license": KNOWN_LICENSES.get(base), "name": base, "note": None}
    return {"hub_id": None, "license": None, "name": "a pretrained language model", "note": None}


def _training_data(model_dir: Path, summary: dict) -> str:
    """Markdown on the training ads: where they came from (the run's load report beside the model,
    ``run_dir/data/load_report.json``, when there is one) and their licence."""
    settings = summary.get("settings", {})
    source = str(_read_json(model_dir.parent.parent / "data" / REPORT_FILE).get("source", ""))
    counted = (
        f"{settings['train_texts']:,} training ads and {summary['validation_ads']:,} validation ads"
        if "train_texts" in settings and "validation_ads" in summary
        else "the training and validation ads"
    )
    embedded = (
        f"the 13,070 TV and wearable ad titles (`{EMBEDDED_FILE}`) published with the original study "
        f"([{ORIGINAL_STUDY}](https://github.com/{ORIGINAL_STUDY})), released under **CC0 1.0** "
        "(public domain)"
    )
    kaggle = (
        f'the Kaggle corpus "Amazon\'s advertisements" ([{KAGGLE_DATASET}]'
        f"(https://www.kaggle.com/datasets/{KAGGLE_DATASET}); about 3.2 million ad titles in 40 "
        "categories, scraped from Amazon by the `paschok/Diploma` project). Its licence is not stated by "
        "its publisher, so the corpus is not redistributed here; only the model is"
    )
    if source.endswith(EMBEDDED_FILE):
        origin = embedded
    elif source and ("amazons-advertisements" in source or Path(source).is_dir()):
        origin = kaggle
    else:
        origin = (
            f"Amazon product ad titles: either {embedded}, or a sample of {kaggle}. This folder does not record which"
        )
    return (
        f"{counted.capitalize()}, drawn from {origin}.\n\n"
        "Ads were cleaned (whitespace and invisible characters normalised, exact duplicates and over-long rows "
        "dropped) and split into train / validation / test **by product**, so colour, size and pack variants "
        "of one product never straddle two splits."
    )


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _table(rows: list[tuple[str, object]], header=("", "")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| {name} | {_number(value)} |" for name, value in rows if value is not None]
    return "\n".join(lines)


def _training_rows(summary: dict, base: dict) -> list[tuple[str, object]]:
    config = summary.get("settings", {}).get("config", {})
    method = summary.get("method")
    if method in {"lora", "qlora"}:
        method += " (adapters merged into the weights)"
    batch = config.get("batch_size")
    if batch and config.get("gradient_accumulation", 1) > 1:
        batch = f"{batch} × {config['gradient_accumulation']} (gradient accumulation)"
    return [
        ("base model", base["name"] + (f" ({base['note']})" if base.get("note") else "")),
        ("method", method),
        ("why this method", summary.get("method_reason")),
        ("training ads", summary.get("settings", {}).get("train_texts")),
        ("training tokens (model tokens, packed)", summary.get("train_tokens")),
        ("block size (model tokens)", config.get("block_size")),
        ("blocks per step", batch),
        ("learning rate", config.get("learning_rate")),
        ("optimizer steps", summary.get("steps")),
        ("epochs", summary.get("epochs")),
        ("category prefix", config.get("category_prefix")),
        ("training time (seconds)", summary.get("train_seconds")),
        ("peak GPU memory (GiB)", summary.get("peak_gpu_memory_gib")),
        ("seed", config.get("seed")),
    ]


def _samples(model_dir: Path) -> str:
    path = model_dir / "sample_generations.csv"
    if not path.is_file():
        return ""
    table = pd.read_csv(path)
    if "fine-tuned" not in table or "prompt" not in table:
        return ""
    rows = "\n".join(f"| {p} | {str(a).replace('|', '/')} |" for p, a in zip(table["prompt"], table["fine-tuned"]))
    return f"\n\nGreedy ads from the fine-tuning run (no repeated 3-grams):\n\n| prompt | ad |\n| --- | --- |\n{rows}"


def build_model_card(
    model_dir: str | Path,
    repo_id: str,
    metrics: dict | None = None,
    widget_prompts: Sequence[str] = tuple(ORIGINAL_PROMPTS),
    inference_parameters: dict | None = None,
    license: str | None = None,
) -> ModelCard:
    """The ``huggingface_hub.ModelCard`` of the model in ``model_dir`` (from its ``finetune.json``) as
    ``repo_id``: ``metrics`` shown in its Evaluation table; ``license`` by default the base model's."""
    model_dir = _require_model(model_dir)
    check_repo_id(repo_id)
    prompts = [p.strip() for p in widget_prompts if p and p.strip()]
    if not prompts:
        raise ValueError("give at least one widget prompt (the first words of an ad, e.g. 'Sony TV')")
    summary = _read_json(model_dir / FINETUNE_RESULT_FILE)
    config = summary.get("settings", {}).get("config", {})
    base = _base_model(summary)
    license = (license or base["license"] or "other").lower()
    parameters = {**INFERENCE_PARAMETERS, **(inference_parameters or {})}
    data = ModelCardData(
        license=license,
        language="en",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=TAGS,
        base_model=base["hub_id"],
        metrics=["perplexity"],
        widget=[{"text": p} for p in prompts],
        inference={"parameters": parameters},
    )
    name = repo_id.split("/")[1]
    category = bool(config.get("category_prefix"))
    prompt_line = (
        f'tokenizer.eos_token + "electronics{CATEGORY_SEPARATOR}Sony TV"  # end-of-text token, category, '
        f'"{CATEGORY_SEPARATOR}", first words'
        if category
        else 'tokenizer.eos_token + "Sony TV"  # the end-of-text token, then the first words'
    )
    arguments = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    evaluation = [(k, v) for k, v in (metrics or {}).items()] + [
        ("validation perplexity (per model token), before fine-tuning", summary.get("perplexity_before")),
        ("validation perplexity (per model token), after fine-tuning", summary.get("perplexity_after")),
    ]
    category_note = (
        '\n\nThe model was trained on `"<category> | <ad>"` texts, so a prompt can name a category '
        "(`<|endoftext|>electronics | Sony TV`); remove the category from what it writes. "
        "The widget prompts carry no category."
        if category
        else ""
    )
    body = f"""
# {name}

Writes Amazon-style **product ad titles** ("Apple Watch Band 38mm 40mm, Stainless Steel Metal Replacement Strap
for iWatch Series 4/3/2/1") from their first words: give it "Sony TV" and it continues the title. It is
{base["name"]} fine-tuned on real ad titles by the `adgen` notebook series, which rebuilds a one-person
study of ad-text generation (word-level LSTMs next to GPT-2 / GPT-Neo used zero-shot, few-shot and fine-tuned).

## Intended use

- Drafting and brainstorming product titles, to be read and corrected by a person before any use.
- Teaching and research: what fine-tuning does to a small language model, compared with prompting.

**Out of scope:** publishing generated titles unreviewed as product listings; anything where product facts
(brand, compatibility, size, certification) must be true; other languages; long-form text.

## Training data and licence

{_training_data(model_dir, summary)}

Each ad is one training text followed by the end-of-text token; texts were packed into fixed-length blocks
(no padding trained on).{category_note}

Model licence: `{license}`{f" (the base model's, {base['license']})" if base["license"] else ""}.

## Training procedure

Causal language-model fine-tuning with the transformers `Trainer` (AdamW, linear schedule with warm-up),
validation loss measured before training and at every evaluation.

{_table(_training_rows(summary, base), ("setting", "value"))}

## Evaluation

{_table(evaluation, ("metric", "value"))}

Perplexities per model token depend on the tokenizer: compare them only between models that share one.
Per-word perplexity, bits per character and top-k next-word accuracy (when shown) are measured on the
held-out test split and compare across tokenizers.{_samples(model_dir)}

## How to use

An ad starts right after the end-of-text token (that is how the ads were laid out in training), so put
`tokenizer.eos_token` before the first words and keep the first line of the output:

```python
from transformers import pipeline

generator = pipeline("text-generation", model="{repo_id}")
tokenizer = generator.tokenizer
prompt = {prompt_line}
text = generator(prompt, {arguments})[0]["generated_text"]
ad = text.replace(tokenizer.eos_token, "").splitlines()[0]
print(ad)
```

Greedy decoding (`do_sample=False`) gives one repeatable ad; add `no_repeat_ngram_size=3` against loops. The
Hub widget feeds the prompt without the end-of-text token, so its ads can differ a little from the snippet's.

## Limitations

- **Made-up facts.** It writes what titles usually look like, not what is true: brands, model numbers and
  compatibility claims are often wrong or impossible ("Apple Watch band for Fitbit Charge").
- **Repetition.** Lists of sizes and series ("38mm 40mm 42mm 44mm, Series 4, Series 3, ...") can loop;
  use a repetition penalty or `no_repeat_ngram_size`.
- **Narrow.** English only, short titles only (one line); the categories of its training ads dominate.
- **Small training run.** {_number(summary.get("settings", {}).get("train_texts", "few"))} training ads and \
{_number(summary.get("steps", "few"))} optimizer steps: a demonstration of the method, not a tuned product model.
  It also inherits the base model's biases and limitations.

## Citation and credits

- The original study: "Generating Ad Text", a one-person study of LSTM and GPT-2 / GPT-Neo ad-title
  generation ([{ORIGINAL_STUDY}](https://github.com/{ORIGINAL_STUDY})), whose 13k-ad dataset is CC0.
- The corpus: "Amazon's advertisements" on Kaggle
  ([{KAGGLE_DATASET}](https://www.kaggle.com/datasets/{KAGGLE_DATASET})).
- The base model: {f"[{base['hub_id']}](https://huggingface.co/{base['hub_id']})" if base["hub_id"] else base["name"]}.
- Trained and published with the `adgen` notebooks and `adgen_utils` (MIT-licensed code).
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


# Column names of the evaluation's comparison table, as the card shows them.
METRIC_NAMES = {
    "per_word_perplexity": "per-word perplexity",
    "bits_per_char": "bits per character",
    "top1_accuracy": "top-1 accuracy",
    "top5_accuracy": "top-5 accuracy",
}


def read_metrics(path: str | Path, missing_ok: bool = False) -> dict | None:
    """Metrics for :func:`build_model_card` from a JSON file or the evaluation's comparison CSV (its
    fine-tuned row's numeric columns). None when absent (or, with ``missing_ok``, no file)."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise FileNotFoundError(f"No metrics file at {path} (give a JSON dict or the evaluation's comparison CSV)")
    if path.suffix.lower() == ".json":
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict):
            raise ValueError(f"{path} must hold a JSON object {{metric: value}}")
        return metrics
    table = pd.read_csv(path)
    if "setting" not in table:
        raise ValueError(
            f"{path} has no 'setting' column: not the evaluation's comparison table "
            "(or an older one: run the evaluation again)"
        )
    rows = table[table["setting"] == FINE_TUNED]
    if rows.empty:
        return None
    row = rows.iloc[0]
    return {
        METRIC_NAMES.get(k, k.replace("_", " ")): v.item() if hasattr(v, "item") else v
        for k, v in row.items()
        if pd.api.types.is_number(v) and not pd.api.types.is_bool(v) and pd.notna(v)
    }


# Reload check ---


def check_reload(model_dir: str | Path, prompts: Sequence[str], max_new_tokens: int = 24) -> pd.DataFrame:
    """Load ``model_dir`` as a Hub user would (``from_pretrained`` and ``pipeline``) and generate greedily
    both ways: one row per prompt (``prompt``, ``from_pretrained``, ``pipeline``, ``same``)."""
    model_dir = _require_model(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False).to(device)
    model.eval()
    generator = pipeline(
        "text-generation", model=str(model_dir), device=0 if device == "cuda" else -1, trust_remote_code=False
    )
    eos = tokenizer.eos_token

    def first_line(text: str) -> str:
        return (text.replace(eos, "").splitlines() or [""])[0].strip()

    rows = []
    for prompt in prompts:
        text = eos + prompt.strip()
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(device)
        with torch.no_grad():
            output = model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        loaded = first_line(tokenizer.decode(output[0], skip_special_tokens=True))
        piped = first_line(generator(text, max_new_tokens=max_new_tokens, do_sample=False)[0]["generated_text"])
        rows.append({"prompt": prompt, "from_pretrained": loaded, "pipeline": piped, "same": loaded == piped})
    return pd.DataFrame(rows, columns=["prompt", "from_pretrained", "pipeline", "same"])


# Publishing ---


def publish(
    model_dir: str | Path,
    repo_id: str,
    card: ModelCard,
    push: bool = False,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload fine-tuned ad-title model (adgen)",
) -> dict:
    """Write ``card`` as ``README.md`` and upload :func:`staged_files` to ``repo_id`` (a dry run without
    ``push`` or ``token``). Returns what was (or would be) uploaded, in MiB; Hub failures raise :class:`PublishError`."""
    model_dir = _require_model(model_dir)
    check_repo_id(repo_id)
    card.save(model_dir / CARD_FILE)
    files = staged_files(model_dir, token)
    listing = [{"path": p.name, "mib": round(p.stat().st_size / 2**20, 3)} for p in files]
    result = {
        "pushed": False,
        "repo_id": repo_id,
        "files": listing,
        "total_mib": round(sum(p.stat().st_size for p in files) / 2**20, 3),
    }
    if not push or not token:
        reason = "push not asked for" if not push else NO_TOKEN
        return {**result, "reason": f"dry run: {reason}; nothing was uploaded"}

    failure = None
    try:
        api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(model_dir),
            repo_id=repo_id,
            repo_type="model",
            allow_patterns=[p.name for p in files],
            commit_message=commit_message,
        )
    except Exception as error:
        failure = f"pushing to {repo_id} failed: {type(error).__name__}: {str(error).replace(token, '***')}"
    if failure is not None:  # raised outside the except block: the original error (and its request) is not chained
        raise PublishError(failure) from None
    return {**result, "pushed": True, "url": str(url), "commit_url": getattr(commit, "commit_url", None)}
