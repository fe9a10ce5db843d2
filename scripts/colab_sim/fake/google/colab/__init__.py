"""A stand-in for Colab's ``google.colab`` package, used only by scripts/colab_check.sh.

Real Colab imports ``google.colab`` when the kernel starts; the simulated kernel does the same
through an IPython startup file, so ``"google.colab" in sys.modules`` is True from the first cell.
Only what adgen touches is provided: ``drive.mount`` (Drive is a local temporary folder) and
``userdata.get`` (no secrets: it raises ``SecretNotFoundError`` as Colab does for a missing one).

This folder deliberately has no ``google/__init__.py``: ``google`` stays a namespace package, so
``google.protobuf`` (TensorFlow) from site-packages still imports next to it.
"""

import os
import time


def _record(call: str) -> None:
    """Append one line to ``$COLAB_SIM_LOG``, so the harness can report which Colab calls ran."""
    path = os.environ.get("COLAB_SIM_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {call}\n")


from . import drive, userdata  # noqa: E402,F401  (real google.colab exposes both as attributes)

SIMULATED = True  # lets a reader of an executed notebook tell the stand-in from the real thing
