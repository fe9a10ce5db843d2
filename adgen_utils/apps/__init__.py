"""The applications: the ``adgen`` command (cli), ads for a seller's catalog (catalog) and the
benchmarks that print JSON (bench).
"""
