"""Run profiles: the parameters each notebook gets from ``adgen run --profile NAME``.

* ``ci``: tiny settings that exercise every code path in minutes (CI, nbval).
* ``quick``: real settings sized for a 2-core CPU; the whole series in about 20 minutes.
* ``full``: the original study's settings and beyond, for a Colab GPU and the full corpus.

Every notebook also receives ``profile``, ``run_dir`` (where the series keeps its data,
models and executed notebooks) and ``figures_dir``, when its parameters cell declares them.
"""
from __future__ import annotations

PROFILES: dict[str, dict] = {
    "ci": {
        "description": "tiny settings for CI and nbval: every code path, in minutes",
        "figures_in_run_dir": True,
        "notebooks": {
            "01_eda": {"data_source": "embedded", "sample_size": 3000, "categories": None},
            "02_sequences": {"min_count": 2, "max_vocabulary": None},
            "03_lstm": {"units": 32, "epochs": 2, "max_train_ads": 600, "eval_train_ads": 200},
            "04_embedding_lstm": {"embedding_dim": 32, "units": 32, "epochs": 2, "max_train_ads": 600,
                                  "eval_train_ads": 200, "compare_sampled_loss": True, "sampled": 64},
        },
    },
    "quick": {
        "description": "real settings sized for a 2-core CPU (the whole series in about 20 minutes)",
        "figures_in_run_dir": False,
        "notebooks": {
            "01_eda": {"data_source": "embedded", "sample_size": None, "categories": None},
            "02_sequences": {"min_count": 2, "max_vocabulary": None},
            "03_lstm": {"units": 128, "epochs": 3},
            "04_embedding_lstm": {"embedding_dim": 128, "units": 128, "epochs": 5, "compare_sampled_loss": True},
        },
    },
    "full": {
        "description": "the full 3.2M-ad corpus and the original's model sizes, for a Colab GPU",
        "figures_in_run_dir": False,
        "notebooks": {
            "01_eda": {"data_source": "kaggle", "sample_size": None, "categories": None},
            # The full corpus has ~1M distinct tokens: cap the vocabulary and train with the
            # sampled softmax; batches of 256 ads are ~6,000 predictions, like the original's 4,096.
            "02_sequences": {"min_count": 3, "max_vocabulary": 100_000},
            "03_lstm": {"units": 128, "epochs": 10, "batch_size": 256, "loss": "sampled", "sampled": 2048,
                        "learning_rate": 0.002, "eval_train_ads": 20_000},
            "04_embedding_lstm": {"embedding_dim": 256, "units": 512, "layers": 2, "epochs": 10, "batch_size": 256,
                                  "loss": "sampled", "sampled": 2048, "learning_rate": 0.002,
                                  "eval_train_ads": 20_000, "compare_sampled_loss": False},
        },
    },
}


def profile_names() -> list[str]:
    """Names of the profiles, cheapest first."""
    return list(PROFILES)


def notebook_parameters(profile: str, notebook: str) -> dict:
    """The profile's own parameters for one notebook (``{}`` if it sets none)."""
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}; choose one of {profile_names()}")
    return dict(PROFILES[profile]["notebooks"].get(notebook, {}))
