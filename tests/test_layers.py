"""The package's shape: layers, no import cycles, no notebook known by name, imports that change nothing."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "adgen_utils"
HEAVY = ("torch", "tensorflow", "keras", "transformers", "pyspark")
# Each layer may import from itself and the layers after it in this list (lower layers).
LAYERS = ["apps", "study", "lstm", "transformer", "corpus", "base"]
BELOW = {layer: set(LAYERS[i:]) for i, layer in enumerate(LAYERS)}
BELOW["lstm"] -= {"transformer"}  # the two model families do not know each other
BELOW["transformer"] -= {"lstm"}
TOP_MODULES = {"adgen_utils.lessons": "apps"}  # single modules that sit above the base layer
NOTEBOOK_NAME = re.compile(r"\b0[1-8]_[a-z]+")


def modules() -> dict[str, Path]:
    return {"adgen_utils." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> str:
    """'adgen_utils.corpus.data' -> 'corpus'; base modules (adgen_utils.models, ...) -> 'base'."""
    parts = module.removesuffix(".__init__").split(".")
    if module in TOP_MODULES:
        return TOP_MODULES[module]
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else "base"


def imports_of(path: Path) -> set[str]:
    """Every adgen_utils module ``path`` imports, at the top or inside a function."""
    found = set()
    known = modules()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adgen_utils"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("adgen_utils.")}
    return found


def test_each_layer_imports_only_itself_and_the_layers_below():
    wrong = [
        f"{module} imports {imported}"
        for module, path in modules().items()
        for imported in imports_of(path)
        if layer_of(imported) not in BELOW[layer_of(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {module: imports_of(path) & set(modules()) for module, path in modules().items()}
    graph = {
        module: {i for i in imported if i != module and not i.endswith("__init__")}
        for module, imported in graph.items()
    }
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        path.append(module)
        for imported in graph.get(module, ()):
            visit(imported)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_training_does_not_import_evaluation():
    training = [m for m in modules() if m.startswith(("adgen_utils.lstm.train", "adgen_utils.transformer.finetune"))]
    assert training, "the training modules moved: update this test"
    for module in training:
        evaluation = {i for i in imports_of(modules()[module]) if "admodel" in i or i.startswith("adgen_utils.study")}
        assert not evaluation, f"{module} imports {evaluation}"


def test_the_seller_rules_do_not_import_the_exploration():
    assert "adgen_utils.corpus.eda" not in imports_of(PACKAGE / "study" / "selection.py")


def test_no_library_module_knows_a_notebook_by_name():
    named = [
        f"{path.relative_to(PACKAGE)}: {m.group()}"
        for path in PACKAGE.rglob("*.py")
        for m in NOTEBOOK_NAME.finditer(path.read_text())
    ]
    assert not named, named


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
    ["adgen_utils", "adgen_utils.corpus.data", "adgen_utils.corpus.eda", "adgen_utils.corpus.sequences"]
    + ["adgen_utils.models", "adgen_utils.settings", "adgen_utils.lessons", "adgen_utils.apps.cli"],
)
def test_the_corpus_layer_base_modules_and_the_cli_load_neither_torch_nor_tensorflow(module):
    code = (
        "import csv, sys; limit = csv.field_size_limit(); "
        f"import {module}; "
        f"print([m for m in {HEAVY!r} if m in sys.modules], csv.field_size_limit() == limit)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True", f"importing {module}: {out}"


def test_the_library_is_thin():
    # Issue 18 set 7,000 lines; issue 19's measured time budgets (pace.py, the plans of training,
    # the machine's instruction sets) added about 300, and a search for dead code found 109 to cut.
    # Issue 20's seller facts added about 600: keywords and the facts of an ad (corpus/facts.py),
    # the ad formats and their rules (study/formats.py), ads against the real ad (study/references.py),
    # and keywords through generation, the rules, fine-tuning and the commands. Writing the keywords
    # into every family's ads as they are generated (steering.py, transformer/forcing.py, the LSTM's
    # loop, the repetition penalty on the ad's own line) added about 190; shared figure endings and a
    # shorter load_ad_model took 25 out.
    # Issue 21's Spark engine added about 580 (apps/spark.py: the session and Java check, the workers'
    # model cache and GPU claim, chunks written whole, the Parquet and CSV outputs, lake tables' lists
    # and nulls, an overwrite that removes only adgen's files, a user's DataFrame),
    # per-row sampling about 70 (transformer/sampling.py) and the chunked one code path of both engines
    # about 100 (apps/catalog.py); the torchrun part files it replaces took about 60 out.
    lines = sum(len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py"))
    assert lines <= 8850, f"adgen_utils has {lines} lines; the design keeps it at 8,850 at most"
