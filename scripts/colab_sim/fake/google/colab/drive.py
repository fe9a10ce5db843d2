"""``google.colab.drive`` stand-in: "mounting" makes a local folder appear at the mount point.

The folder is ``$COLAB_SIM_DRIVE`` (a fresh temporary folder per simulated machine); ``MyDrive``
is created in it, as a Google Drive always has one. As root the folder is bind-mounted, so that
``/content/drive/...`` stays what ``Path.resolve()`` returns, as on Colab's FUSE mount; where
``mount`` is not allowed the mount point becomes a symbolic link instead. Messages follow Colab's.
"""

import os
import subprocess
from pathlib import Path

from . import _record


def _mounted(mountpoint: Path) -> bool:
    return mountpoint.is_symlink() or os.path.ismount(mountpoint)


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    """Make ``$COLAB_SIM_DRIVE`` (with ``MyDrive`` in it) appear at ``mountpoint``."""
    del timeout_ms, readonly
    target = os.environ.get("COLAB_SIM_DRIVE")
    if not target:
        raise RuntimeError("COLAB_SIM_DRIVE is not set: this google.colab is the colab_check.sh stand-in")
    mountpoint = Path(os.path.expanduser(str(mountpoint)))
    _record(f"drive.mount({str(mountpoint)!r}, force_remount={force_remount})")
    if _mounted(mountpoint):
        if not force_remount:
            print(
                f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, call "
                f'drive.mount("{mountpoint}", force_remount=True).'
            )
            return
        flush_and_unmount(mountpoint=mountpoint)
    if mountpoint.exists() and (not mountpoint.is_dir() or any(mountpoint.iterdir())):
        raise ValueError("Mountpoint must not already contain files")
    (Path(target) / "MyDrive").mkdir(parents=True, exist_ok=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        bound = subprocess.run(["mount", "--bind", target, str(mountpoint)], capture_output=True).returncode == 0
    except FileNotFoundError:
        bound = False
    if not bound:
        mountpoint.rmdir()
        mountpoint.symlink_to(target, target_is_directory=True)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms=86400000, mountpoint="/content/drive"):
    """Undo :func:`mount` (the files stay in ``$COLAB_SIM_DRIVE``)."""
    del timeout_ms
    mountpoint = Path(mountpoint)
    if mountpoint.is_symlink():
        mountpoint.unlink()
    elif os.path.ismount(mountpoint):
        subprocess.run(["umount", str(mountpoint)], check=True)
