"""The applications: the ``adgen`` command (cli) and ads for a seller's catalog (catalog)."""
