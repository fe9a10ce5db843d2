"""Every notebook's parameters, declared once: name, default, type and meaning.

This module is the single home of the series' settings. The notebooks' ``parameters`` cells,
the profiles (:mod:`adgen_utils.series.profiles`, which only list differences from these defaults),
the library's configuration dataclasses (``LSTMConfig``, ``FinetuneConfig``, ``CleanConfig``...),
the ``adgen`` command's defaults and the README's parameter tables all read it; ``adgen sync``
writes the notebook cells and the README tables from it, and a test fails when they disagree.

The defaults are the ``quick`` profile: real settings sized for a 2-core CPU. It imports nothing
heavy, so any module can take its defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass

ORIGINAL_PROMPTS = ["Sony TV", "Apple Watch", "Labor Day discounts for"]
DEFAULT_DECODING = "sample temperature 0.8 top-k 50 top-p 0.95 rep 1.2"
AMAZON_TITLE_CHARS = 200  # the longest product title Amazon takes: the default length limit of an ad
DEFAULT_PROFILE = "quick"
# What the two LSTM notebooks feed their LSTM: one-hot vectors (the original "LSTM") or an Embedding.
LSTM_INPUTS = {"03_lstm": "one_hot", "04_embedding_lstm": "embedding"}


@dataclass(frozen=True)
class Parameter:
    """One notebook parameter. ``type`` is written as in a type hint (``"Optional[int]"``)."""

    name: str
    default: object
    type: str
    help: str


@dataclass(frozen=True)
class Notebook:
    """What a notebook is: its title, whether it uses a GPU, the package extras it installs on
    Colab, the earlier notebooks whose results it cannot do without (``needs``) and those it uses
    when they are there (``uses``), and its own parameters."""

    name: str
    title: str
    parameters: tuple[Parameter, ...]
    gpu: bool = False
    extras: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()


def _p(name, default, type_, help_):
    return Parameter(name, default, type_, help_)


COMMON = (
    _p(
        "run_dir",
        None,
        "Optional[str]",
        "where the series keeps data, models and results (None: runs/PROFILE in "
        "the repository, or on Google Drive with drive True)",
    ),
    _p(
        "figures_dir",
        None,
        "Optional[str]",
        "where figures are saved (None: figures/ in the repository; the ci profile uses run_dir/figures)",
    ),
    _p(
        "drive",
        False,
        "bool",
        "Colab: mount Google Drive and keep run_dir there, so a disconnect loses nothing "
        "and every notebook finds the others' work",
    ),
)
SEED = _p("seed", 0, "int", "random seed")
# Notebooks 03, 04 and 06 score the same first validation ads with notebook 07's footing at every
# checkpoint, so that their quality curves (quality against training compute) can be compared.
VALIDATION_ADS = _p(
    "validation_ads",
    100,
    "Optional[int]",
    "validation ads scored as notebook 07 scores them at every epoch or evaluation: the quality curve "
    "(None: the whole split)",
)

_LSTM_TRAINING = (
    _p("units", 128, "int", "LSTM units per layer (the original: LSTM(128))"),
    _p("layers", 1, "int", "stacked LSTM layers"),
    _p("dropout", 0.3, "float", "dropout after each LSTM layer (the original: 0.3)"),
    _p("learning_rate", 0.005, "float", "Adam step size"),
    _p("batch_size", 64, "int", "ads per batch (about 1,500 predictions)"),
)
_LSTM_LOSS = (
    _p("patience", 2, "int", "early stopping: epochs without a better validation loss"),
    _p("loss", "full", "str", "full softmax, or sampled (cheaper for a large vocabulary; training only)"),
    _p("sampled", 512, "int", "classes per step of the sampled softmax"),
)
_LSTM_AFTER_DATA = (
    VALIDATION_ADS,
    _p("eval_train_ads", 2000, "int", "training ads measured again after training"),
    _p("prompts", ["Sony TV", "Apple Watch"], "list[str]", "beginnings of ads to generate from"),
    _p("temperatures", [0.5, 1.0], "list[float]", "sampling temperatures shown"),
    SEED,
)


def _lstm_notebook(name: str, title: str, epochs: int, max_train_ads: int | None, before=(), after=()) -> Notebook:
    """Notebooks 03 and 04: the same training and loss parameters, their own budget (epochs and
    training ads) and extras."""
    budget = (
        _p("epochs", epochs, "int", "at most this many passes over the training ads"),
        *_LSTM_LOSS,
        _p("max_train_ads", max_train_ads, "Optional[int]", "train on the first N training ads (None: all)"),
    )
    return Notebook(
        name,
        title,
        gpu=True,
        needs=("02_sequences",),
        parameters=(*before, *_LSTM_TRAINING, *budget, *_LSTM_AFTER_DATA, *after),
    )


NOTEBOOKS: dict[str, Notebook] = {
    nb.name: nb
    for nb in (
        Notebook(
            "01_eda",
            "Exploring the Amazon ads corpus",
            parameters=(
                _p(
                    "data_source",
                    "embedded",
                    "str",
                    "embedded (the 13k CC0 ads in data/), kaggle (the full 3.2M-ad "
                    "corpus), or a CSV file or corpus folder",
                ),
                _p("sample_size", None, "Optional[int]", "keep this many cleaned ads, chosen at random (None: all)"),
                _p("categories", None, "Optional[list[str]]", "category names to keep (None: all)"),
                _p("min_chars", 5, "int", "shorter ads are dropped (characters, after cleaning)"),
                _p("max_chars", 500, "int", "longer ads are dropped (spam lists of model numbers)"),
                _p("validation_fraction", 0.1, "float", "share of products held out for validation"),
                _p("test_fraction", 0.1, "float", "share of products held out for the final test"),
                _p("seed", 0, "int", "sampling seed and salt of the split hash"),
            ),
        ),
        Notebook(
            "02_sequences",
            "From ads to training sequences",
            needs=("01_eda",),
            parameters=(
                _p("min_count", 2, "int", "training words rarer than this become <unk>"),
                _p("max_vocabulary", None, "Optional[int]", "cap on the vocabulary size (None: no cap)"),
                _p("max_tokens", 64, "int", "longest ad kept, with <bos> and <eos>; longer ads are cut and counted"),
            ),
        ),
        # The one-hot LSTM is the teaching contrast: in quick, 3,000 ads leave the time to fine-tuning.
        _lstm_notebook("03_lstm", "The LSTM without an Embedding layer", epochs=3, max_train_ads=3000),
        _lstm_notebook(
            "04_embedding_lstm",
            "The Embedding LSTM",
            epochs=5,
            max_train_ads=None,
            before=(_p("embedding_dim", 128, "int", "size of the word vectors"),),
            after=(
                _p(
                    "compare_sampled_loss",
                    True,
                    "bool",
                    "also train with the other loss and compare held-out cross-entropy",
                ),
            ),
        ),
        Notebook(
            "05_zero_few_shot",
            "Zero-, one- and few-shot with pretrained transformers",
            gpu=True,
            extras=("transformers",),
            needs=("01_eda",),
            parameters=(
                _p(
                    "models",
                    ["smollm2-135m"],
                    "list[str]",
                    "Hub ids, local folders, smollm2-135m (offline default) or tiny",
                ),
                _p("prompts", ORIGINAL_PROMPTS, "list[str]", "beginnings of ads (the original's three)"),
                _p("shots", [0, 1, 3], "list[int]", "example ads shown before each prompt"),
                _p(
                    "shot_decoding",
                    "greedy + no_repeat_ngram 3",
                    "str",
                    "decoding of the shots comparison (a name in adgen_utils.models.DECODINGS)",
                ),
                _p(
                    "decodings",
                    None,
                    "Optional[list[str]]",
                    "decodings compared (None: all of adgen_utils.models.DECODINGS)",
                ),
                _p("max_new_tokens", 32, "int", "generation length, in model tokens"),
                _p("batch_size", 8, "int", "prompts per generate() call"),
                _p("speed_prompts", 8, "int", "prompts of the batched vs one-at-a-time comparison"),
                _p("perplexity_ads", 24, "int", "validation ads scored after 0, 1, 3 examples"),
                SEED,
            ),
        ),
        Notebook(
            "06_fine_tuning",
            "Fine-tuning a pretrained transformer on the ads",
            gpu=True,
            extras=("transformers", "quantization"),
            needs=("01_eda",),
            parameters=(
                _p("base_model", "smollm2-135m", "str", "as models in notebook 05"),
                _p("method", "auto", "str", "full, lora, qlora (4-bit, CUDA), or auto from the memory estimate"),
                _p("category_prefix", False, "bool", "train on CATEGORY | AD so a prompt can ask for a category"),
                _p("max_train_ads", None, "Optional[int]", "training ads used (None: the whole split)"),
                VALIDATION_ADS,
                _p("block_size", 64, "int", "model tokens per packed block"),
                _p("batch_size", 8, "int", "blocks per device step"),
                _p("gradient_accumulation", 1, "int", "device steps per optimizer update"),
                _p("epochs", 1.0, "float", "passes over the training blocks"),
                _p(
                    "max_steps",
                    200,
                    "int",
                    "more than 0: train exactly this many optimizer steps, drawing blocks from all the "
                    "training ads (epochs is then ignored); -1: train for epochs",
                ),
                _p("learning_rate", 3e-4, "float", "AdamW peak step size (linear decay after a short warm-up)"),
                _p("eval_steps", 50, "Optional[int]", "evaluate and checkpoint every N steps (None: every epoch)"),
                _p("prompts", ORIGINAL_PROMPTS, "list[str]", "beginnings of ads to compare base and fine-tuned"),
                _p("max_new_tokens", 32, "int", "generation length, in model tokens"),
                _p("run_aitextgen", False, "bool", "also train with the original's aitextgen (its own environment)"),
                _p("aitextgen_model", "tiny", "str", "tiny, or the original's EleutherAI/gpt-neo-125M (needs the Hub)"),
                _p("aitextgen_steps", 30, "int", "aitextgen training steps"),
                SEED,
            ),
        ),
        Notebook(
            "07_evaluation",
            "Every model on one footing",
            gpu=True,
            extras=("transformers", "evaluation"),
            needs=("01_eda",),
            uses=("03_lstm", "04_embedding_lstm", "06_fine_tuning"),
            parameters=(
                _p(
                    "pretrained_model", "smollm2-135m", "str", "the model of notebook 05, scored zero-shot and few-shot"
                ),
                _p("shots", 3, "int", "example ads (same category, training split) before each ad"),
                _p("test_ads", 100, "Optional[int]", "test ads every model scores (None: the whole test split)"),
                _p("product_count", 30, "int", "products (brand + product words of a test ad) to write ads for"),
                _p("candidates", 3, "int", "ads written per product, of which the rules keep the most likely"),
                _p("max_new_tokens", 32, "int", "generation length (words for an LSTM)"),
                _p("decoding", DEFAULT_DECODING, "str", "a name in adgen_utils.models.DECODINGS"),
                _p("playground_widgets", True, "bool", "False: the playground's functions without widgets (headless)"),
                SEED,
            ),
        ),
        Notebook(
            "08_publishing",
            "Publishing the fine-tuned model",
            extras=("transformers",),
            needs=("06_fine_tuning",),
            parameters=(
                _p("model_dir", None, "Optional[str]", "the folder to publish (None: run_dir/models/finetuned)"),
                _p("repo_id", "your-username/adgen-ad-titles", "str", "the Hub repository, OWNER/NAME"),
                _p("push", False, "bool", "upload when a token is found (HF_TOKEN or the Colab secret)"),
                _p("private", True, "bool", "a new Hub repository starts private"),
                _p("widget_prompts", ORIGINAL_PROMPTS, "list[str]", "the Hub widget's example prompts"),
                _p("max_new_tokens", 24, "int", "length of the reload check's ads"),
            ),
        ),
    )
}

# The `adgen generate` command's own settings (not a notebook's).
CATALOG = (
    _p("per_product", 3, "int", "ads per product"),
    _p("candidates", 8, "int", "ads written per product, of which the most likely that pass the rules are kept"),
    _p("max_chars", AMAZON_TITLE_CHARS, "int", "longest ad, in characters (Amazon's title limit)"),
    _p("decoding", DEFAULT_DECODING, "str", "a name in adgen_utils.models.DECODINGS"),
    _p("max_new_tokens", 40, "int", "tokens (words for an LSTM) per ad"),
    _p("batch_size", 16, "int", "prompts per generate() call"),
)


def notebook(name: str) -> Notebook:
    """The declaration of notebook ``name`` (``"03_lstm"``); a clear error for an unknown one."""
    if name not in NOTEBOOKS:
        raise KeyError(f"No notebook {name!r} in the series; it has {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[name]


def declared(name: str) -> tuple[Parameter, ...]:
    """Every parameter of notebook ``name``: ``profile``, the common ones, then its own."""
    profile = Parameter("profile", DEFAULT_PROFILE, "str", "the settings every parameter left as ... takes")
    return (profile, *COMMON, *notebook(name).parameters)


def defaults(name: str) -> dict:
    """``{parameter: default}`` for notebook ``name`` (the quick profile's values)."""
    return {p.name: p.default for p in declared(name)}


def default(name: str, parameter: str):
    """The default of one parameter of one notebook, e.g. ``default("06_fine_tuning", "block_size")``."""
    values = defaults(name)
    if parameter not in values:
        raise KeyError(f"{name} has no parameter {parameter!r}")
    return values[parameter]


def catalog_default(parameter: str):
    """The default of one ``adgen generate`` setting."""
    return {p.name: p.default for p in CATALOG}[parameter]


# ---------------------------------------------------------------------------------------------
# Types, as papermill reads them from the parameters cell and as values are checked
# ---------------------------------------------------------------------------------------------

_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def matches_type(value, type_: str) -> bool:
    """True when ``value`` fits ``type_`` (``int``, ``float``, ``str``, ``bool``, ``list[T]``,
    ``Optional[T]``). A bool is not an int here, and an int is a float."""
    if type_.startswith("Optional[") and type_.endswith("]"):
        return value is None or matches_type(value, type_[len("Optional[") : -1])
    if type_.startswith("list[") and type_.endswith("]"):
        return isinstance(value, (list, tuple)) and all(matches_type(v, type_[len("list[") : -1]) for v in value)
    if type_ not in _SCALARS:
        raise ValueError(f"unknown parameter type {type_!r}")
    if isinstance(value, bool) and type_ != "bool":
        return False
    return isinstance(value, _SCALARS[type_])
