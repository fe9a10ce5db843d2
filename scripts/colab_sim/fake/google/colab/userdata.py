"""``google.colab.userdata`` stand-in: the notebook's secrets, of which the simulation has none.

Real Colab raises ``SecretNotFoundError`` for a secret that does not exist and
``NotebookAccessError`` when the user has not granted this notebook access to it.
"""

from . import _record


class NotebookAccessError(Exception):
    """The notebook has not been granted access to the secret."""

    def __init__(self, key):
        super().__init__(f"Notebook does not have access to secret {key}")


class SecretNotFoundError(Exception):
    """No secret by that name."""

    def __init__(self, key):
        super().__init__(f"Secret {key} does not exist.")


class TimeoutException(Exception):
    """The frontend did not answer in time."""

    def __init__(self, key):
        super().__init__(
            f"Requesting secret {key} timed out. Secrets can only be fetched when running from the Colab UI."
        )


def get(key):
    """Always ``SecretNotFoundError``: a fresh simulated machine has no secrets."""
    _record(f"userdata.get({key!r}) -> SecretNotFoundError")
    raise SecretNotFoundError(key)
