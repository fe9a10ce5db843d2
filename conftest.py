"""pytest configuration shared by the unit tests and nbval over the executed notebooks."""


def pytest_collectstart(collector):
    """nbval: never compare stderr (TensorFlow/absl/tqdm noise, kernel warnings)."""
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
