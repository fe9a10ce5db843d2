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
        },
    },
    "quick": {
        "description": "real settings sized for a 2-core CPU (the whole series in about 20 minutes)",
        "figures_in_run_dir": False,
        "notebooks": {
            "01_eda": {"data_source": "embedded", "sample_size": None, "categories": None},
        },
    },
    "full": {
        "description": "the full 3.2M-ad corpus and the original's model sizes, for a Colab GPU",
        "figures_in_run_dir": False,
        "notebooks": {
            "01_eda": {"data_source": "kaggle", "sample_size": None, "categories": None},
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
