"""Figures the same way in every notebook: one seaborn theme (set on first use), PNG files under a folder."""

from __future__ import annotations

from pathlib import Path

THEME = {"style": "whitegrid", "palette": "deep"}  # seaborn's deep palette: blue, orange, green, red...
_themed = False


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """``(fig, axes)`` from ``matplotlib.pyplot.subplots(nrows, ncols, **kwargs)``, under :data:`THEME`
    (``seaborn.set_theme``, applied once per process)."""
    global _themed
    import matplotlib.pyplot as plt

    if not _themed:
        import seaborn as sns

        sns.set_theme(**THEME)
        _themed = True
    return plt.subplots(nrows, ncols, **kwargs)


def finish(fig, folder: str | Path | None, name: str):
    """Lay ``fig`` out, save it as :func:`save_figure` does, and return it: the end of every plot."""
    fig.tight_layout()
    save_figure(fig, folder, name)
    return fig


def save_figure(fig, folder: str | Path | None, name: str, dpi: int = 110) -> Path | None:
    """Write ``fig`` as ``folder/name.png`` (folder created if needed); return the path or None."""
    if folder is None:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
