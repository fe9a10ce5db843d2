"""Where the library's messages go: the ``adgen`` logger, shown on stderr by :func:`show_messages`,
so a command whose output is JSON prints nothing else on stdout."""

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
