"""The package's layers: what each layer may import, and that importing changes nothing process-wide."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "adgen_utils"
HEAVY = ("torch", "tensorflow", "keras", "transformers")
# Each layer may import from itself and the layers after it in this list (lower layers).
LAYERS = ["apps", "series", "study", "lstm", "transformer", "corpus", "base"]
BELOW = {layer: set(LAYERS[i:]) for i, layer in enumerate(LAYERS)}
BELOW["lstm"] -= {"transformer"}  # the two model families do not know each other
BELOW["transformer"] -= {"lstm"}
# Opening a model imports the one family it needs, when it is asked to (adgen_utils.models.load_ad_model).
DISPATCH = {
    ("adgen_utils.models", "adgen_utils.lstm.admodel"),
    ("adgen_utils.models", "adgen_utils.transformer.admodel"),
}


def layer_of(module: str) -> str:
    """'adgen_utils.corpus.data' -> 'corpus'; base modules (adgen_utils.models, ...) -> 'base'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else "base"


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported adgen_utils module, imported at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adgen_utils"):
            names = [node.module] if node.module.count(".") >= 2 else [f"{node.module}.{a.name}" for a in node.names]
            found += [(name, id(node) in top) for name in names]
    return found


def test_each_layer_imports_only_itself_and_the_layers_below():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = "adgen_utils." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for imported, at_top in imports_of(path):
            if not at_top and (module, imported) in DISPATCH:
                continue
            if layer_of(imported) not in BELOW[layer_of(module)]:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_another_modules_private_names():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adgen_utils"):
                wrong += [
                    f"{path.name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not wrong, wrong


@pytest.mark.parametrize(
    "module",
    [
        "adgen_utils",
        "adgen_utils.corpus.data",
        "adgen_utils.corpus.eda",
        "adgen_utils.corpus.sequences",
        "adgen_utils.models",
        "adgen_utils.series.session",
        "adgen_utils.series.stages",
        "adgen_utils.apps.cli",
    ],
)
def test_the_corpus_layer_base_modules_and_the_cli_load_neither_torch_nor_tensorflow(module):
    code = (
        "import csv, sys; limit = csv.field_size_limit(); "
        f"import {module}; "
        f"print([m for m in {HEAVY!r} if m in sys.modules], csv.field_size_limit() == limit)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True", f"importing {module}: {out}"
