"""Every error the project raises on purpose: an :class:`AdgenError` whose message says what to do.
``adgen`` prints it on one line and exits with its ``exit_code``; each keeps its built-in base class."""

from __future__ import annotations

USAGE = 2  # exit status: the command's input or arguments are wrong; fix them and run again
FAILED = 1  # exit status: the work failed (a notebook raised, a push was refused)


class AdgenError(Exception):
    """Base of the project's errors; ``exit_code`` is what ``adgen`` exits with."""

    exit_code = USAGE


class CorpusUnavailable(AdgenError, RuntimeError):
    """The requested corpus cannot be found or downloaded; the message says what to do."""


class CorpusFormatError(AdgenError, ValueError):
    """A CSV file cannot be read as ads (no header, no ad column, empty)."""


class ParameterError(AdgenError, ValueError):
    """A parameter's value does not fit its declared type or is not allowed here."""


class StageMissing(AdgenError, RuntimeError):
    """A lesson opened alone needs an earlier lesson whose training would take longer here than it
    waits (measured on this machine); the message says which notebook to run first."""

    exit_code = FAILED


class ModelUnavailable(AdgenError, RuntimeError):
    """A model could not be found or loaded; the message says what to use instead."""


class EngineUnavailable(AdgenError, RuntimeError):
    """Spark cannot start here: pyspark or Java 17 is missing; the message names what to install."""


class PublishError(AdgenError, RuntimeError):
    """Publishing failed; the message never holds the Hub token."""

    exit_code = FAILED


class NotebookFailed(AdgenError, RuntimeError):
    """A notebook of the series raised; the message names it, the cell and the saved output."""

    exit_code = FAILED
