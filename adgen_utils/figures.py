"""Saving figures the same way in every notebook: PNG under a folder, shown inline."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, folder: str | Path | None, name: str, dpi: int = 110) -> Path | None:
    """Write ``fig`` as ``folder/name.png`` (folder created if needed); return the path or None."""
    if folder is None:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
