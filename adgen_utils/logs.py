"""Where the library's messages go: the ``adgen`` logger, shown on stderr.

Functions that report progress in words take a ``log`` callable whose default is :func:`say`; a
test or a caller may pass its own (``lines.append``). :func:`say` logs at INFO on the ``adgen``
logger. The ``adgen`` command and every notebook (through ``session.start``) call
:func:`show_messages`, which shows those messages on stderr, so that a command whose output is
JSON prints nothing else on stdout (``adgen evaluate ... | jq`` works). Imported as a library
without either, the messages follow the caller's own logging set-up.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("adgen")


def say(message: str) -> None:
    """Report one line of progress or status (INFO on the ``adgen`` logger)."""
    logger.info(message)


def show_messages(stream=None) -> None:
    """Show the ``adgen`` logger's messages (INFO and up, the bare text) on ``stream`` (stderr by
    default), once however often it is called."""
    if not any(getattr(handler, "adgen", False) for handler in logger.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.adgen = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
