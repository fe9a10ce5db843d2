"""Write the generated parts of the notebooks and the README from their one declaration each.

* The repository address lives in ``pyproject.toml`` (``[project.urls] Repository``) and the
  version in ``adgen_utils.__version__``: every Colab badge, every setup cell and the README's
  links are written from them.
* Every notebook's parameters live in :mod:`adgen_utils.parameters` and :mod:`adgen_utils.series.profiles`:
  the ``parameters`` cells, the cell that resolves them and the README's parameter tables are
  written from there, as is each notebook's GPU request.
* The README's "Measured" section is written from the saved results in ``results/``
  (:mod:`adgen_utils.series.measured`): its tables and every number its sentences state.

``adgen sync`` rewrites what differs; ``adgen sync --check`` only lists it (a test runs that);
``adgen sync --repository URL`` moves a fork to its own address in one command.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from adgen_utils import __version__
from adgen_utils.layout import repository_root, results_dir
from adgen_utils.parameters import COMMON, NOTEBOOKS, declared
from adgen_utils.series.estimates import (
    COLAB_GPUS,
    FULL_CORPUS_DISTINCT_ADS,
    KNOWN_PARAMETERS,
    SERVERS,
    distributed_finetune,
    format_duration,
    precision_for,
    profile_estimate,
)
from adgen_utils.series.measured import measured_section
from adgen_utils.series.profiles import PROFILES, changes, profile_names, profile_values
from adgen_utils.series.session import COLAB_HOME

PYPROJECT = "pyproject.toml"
README = "README.md"
NOTEBOOKS_FOLDER = "notebooks"
_URL_LINE = re.compile(r'^(Repository\s*=\s*")([^"]*)(")', re.MULTILINE)
_GITHUB = re.compile(r"^https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")
_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
_COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"]*?/notebooks/(\d\d_\w+\.ipynb)")
_CLONE_COMMAND = re.compile(r"git clone https://github\.com/[\w.-]+/[\w.-]+?(?:\.git)?(?=\s)")
MARKERS = ("<!-- adgen sync: {} begin -->", "<!-- adgen sync: {} end -->")


# ---------------------------------------------------------------------------------------------
# The repository address
# ---------------------------------------------------------------------------------------------


def repository_url(root: Path | None = None) -> str:
    """The ``[project.urls] Repository`` address declared in ``pyproject.toml``."""
    text = Path(root or repository_root(), PYPROJECT).read_text()
    match = _URL_LINE.search(text)
    if not match:
        raise ValueError(f"{PYPROJECT} declares no [project.urls] Repository address")
    return match.group(2)


def check_github_url(url: str) -> tuple[str, str]:
    """``(owner, name)`` of a ``https://github.com/OWNER/NAME`` address (Colab opens notebooks
    from GitHub only); a ValueError for anything else."""
    match = _GITHUB.match(url.strip())
    if not match:
        raise ValueError(
            f"{url!r} is not a GitHub repository address like https://github.com/OWNER/NAME: "
            "Colab's badges open notebooks from GitHub"
        )
    return match.group(1), match.group(2)


def set_repository_url(url: str, root: Path | None = None) -> None:
    """Declare ``url`` as the repository address in ``pyproject.toml``."""
    owner, name = check_github_url(url)
    path = Path(root or repository_root(), PYPROJECT)
    path.write_text(
        _URL_LINE.sub(lambda m: f"{m.group(1)}https://github.com/{owner}/{name}{m.group(3)}", path.read_text(), count=1)
    )


def badge_link(url: str, notebook_file: str) -> str:
    """The Open-in-Colab address of ``notebooks/<notebook_file>`` on the default branch."""
    owner, name = check_github_url(url)
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/main/{NOTEBOOKS_FOLDER}/{notebook_file}"


# ---------------------------------------------------------------------------------------------
# Generated notebook cells
# ---------------------------------------------------------------------------------------------


# The shell steps of a clone that is done once and redone when interrupted: unless the marker of a
# finished clone is there, clone tag $2 of $1 into $3 (else the default branch), then leave the
# marker; when both clones fail, git's message is followed by what to do.
CLONE_ONCE = (
    'test -f "$3/.adgen-cloned" || { rm -rf "$3"; git clone -q --depth 1 --branch "$2" "$1" "$3" 2>/dev/null '
    '|| { rm -rf "$3"; git clone -q --depth 1 "$1" "$3"; }; } && touch "$3/.adgen-cloned" '
    "|| { echo \"Could not clone $1: check the address and the runtime's internet access, then run this cell "
    'again." >&2; exit 1; }'
)


def setup_cell(name: str, url: str, version: str = __version__) -> str:
    """The first code cell: on Colab, clone this version of the repository once (:data:`CLONE_ONCE`)
    and install what the notebook needs (:func:`adgen_utils.series.session.colab_install`); safe to
    run again; elsewhere it does nothing. Everything else a notebook does first is in the library;
    this much cannot be, since it fetches the library."""
    return f'''# Setup. On Colab: fetch adgen {version} and install what this notebook needs (run it again if it
# stops). Elsewhere it does nothing. Written by `adgen sync`.
import subprocess, sys
if "google.colab" in sys.modules:  # clone tag v{version} (else the default branch) once, then install
    subprocess.run(["bash", "-c", {CLONE_ONCE!r}, "clone", "{url}", "v{version}", "{COLAB_HOME}"], check=True)
    sys.path.insert(0, "{COLAB_HOME}")
    from adgen_utils.series.session import colab_install
    colab_install("{name}", version="{version}")'''


def parameters_cell(name: str) -> str:
    """The ``parameters`` cell: ``profile`` and every other parameter as ``...`` with its type and
    meaning, which papermill's ``inspect_notebook`` reads."""
    lines = [
        "# Every parameter left as ... takes the value of `profile` (the table below shows them).",
        "# Write a value to change one; headless: adgen run -p NAME=VALUE. Written by `adgen sync`.",
        "from typing import Optional  # for the type hints below",
    ]
    for parameter in declared(name):
        if parameter.name == "profile":
            code = f'profile: str = "{parameter.default}"'
            meaning = f"{' | '.join(profile_names())}: {parameter.help}"
        else:
            code = f"{parameter.name}: {parameter.type} = ..."
            meaning = parameter.help
        line = f"{code:<40}# {meaning}"
        if line.count("=") != 1:
            raise ValueError(f"papermill cannot parse a parameter line with more than one '=': {line!r}")
        lines.append(line)
    return "\n".join(lines)


def start_cell(name: str) -> str:
    """The cell after ``parameters``: resolve them, show them, rebuild missing earlier stages."""
    return (
        "from adgen_utils.series import session\n\n"
        f'run = session.start("{name}", globals())  # fill in every ..., show the settings, '
        "rebuild what earlier notebooks left missing"
    )


def _set_source(cell: dict, source: str) -> bool:
    old = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    if old == source:
        return False
    cell["source"] = source.splitlines(keepends=True)
    return True


def _tagged(cells: list[dict], tag: str) -> int | None:
    return next((i for i, c in enumerate(cells) if tag in c.get("metadata", {}).get("tags", [])), None)


def _code_cell(source: str, tag: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": tag,
        "metadata": {"tags": [tag]},
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }


def sync_notebook(path: Path, url: str, check: bool = False) -> bool:
    """Bring one notebook's badge, setup, parameters and start cells and GPU request in line with
    the declarations. Returns True when something differed (written unless ``check``)."""
    notebook = json.loads(path.read_text())
    name = path.stem
    declaration = NOTEBOOKS[name]
    cells = notebook["cells"]
    changed = False

    title = cells[0]
    text = "".join(title["source"])
    badge = f"[![Open In Colab]({_BADGE_IMAGE})]({badge_link(url, path.name)})"
    new_text = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)", lambda _: badge, text)
    if badge not in new_text:
        raise ValueError(f"{path}: the first cell has no Open In Colab badge to update")
    changed |= _set_source(title, new_text)

    setup = _tagged(cells, "setup")
    if setup is None:  # first sync of an older notebook: its setup cell is the first code cell
        setup = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
        cells[setup].setdefault("metadata", {})["tags"] = ["setup"]
        changed = True
    changed |= _set_source(cells[setup], setup_cell(name, url))

    parameters = _tagged(cells, "parameters")
    if parameters is None:
        raise ValueError(f"{path}: no cell tagged 'parameters'")
    changed |= _set_source(cells[parameters], parameters_cell(name))

    start = _tagged(cells, "start")
    if start is None:
        cells.insert(parameters + 1, _code_cell(start_cell(name), "start"))
        changed = True
    else:
        changed |= _set_source(cells[start], start_cell(name))

    metadata = notebook["metadata"]
    wanted_gpu = {"accelerator": "GPU"} if declaration.gpu else {}
    current_gpu = {k: metadata[k] for k in ("accelerator",) if k in metadata}
    colab = metadata.setdefault("colab", {})
    if current_gpu != wanted_gpu or (colab.get("gpuType") == "T4") != declaration.gpu:
        metadata.pop("accelerator", None)
        colab.pop("gpuType", None)
        if declaration.gpu:
            metadata["accelerator"] = "GPU"
            colab["gpuType"] = "T4"
        changed = True
    if changed and not check:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return changed


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------


def _literal(value) -> str:
    return f'`"{value}"`' if isinstance(value, str) else f"`{value!r}`"


def parameters_tables() -> str:
    """Markdown: for each notebook, every parameter with its default (the quick profile), what the
    other profiles change, and its meaning."""
    others = [p for p in profile_names() if p != "quick"]
    common = ["**Every notebook**", "", "| parameter | default | meaning |", "| --- | --- | --- |"]
    common += [f"| `{p.name}` | {_literal(p.default)} | {p.help} |" for p in COMMON]
    parts = ["\n".join(common)]
    for name in NOTEBOOKS:
        rows = [
            f"**`{name}`** ({'GPU' if NOTEBOOKS[name].gpu else 'CPU'} runtime on Colab)",
            "",
            "| parameter | default (`quick`) | " + " | ".join(f"`{p}`" for p in others) + " | meaning |",
            "| --- | --- | " + " | ".join("---" for _ in others) + " | --- |",
        ]
        profile_changes = {p: changes(p, name) for p in others}
        for parameter in NOTEBOOKS[name].parameters:
            cells = [
                _literal(profile_changes[p][parameter.name]) if parameter.name in profile_changes[p] else ""
                for p in others
            ]
            rows.append(
                f"| `{parameter.name}` | {_literal(parameter.default)} | "
                + " | ".join(cells)
                + f" | {parameter.help.replace('<', '&lt;')} |"
            )
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def profiles_table() -> str:
    """Markdown: each profile and what it is for."""
    rows = ["| profile | for |", "| --- | --- |"]
    rows += [
        f"| `{name}` | {profile.description}{f' (starts from `{profile.base}`)' if profile.base else ''} |"
        for name, profile in PROFILES.items()
    ]
    return "\n".join(rows)


def estimates_table() -> str:
    """Markdown: the estimated training time and peak memory of the full and large profiles'
    long notebooks on Colab's GPUs (``estimates.profile_estimate``)."""

    rows = [
        "| estimated (`adgen_utils.series.estimates`) | "
        + " | ".join(f"{name} ({precision_for(device)})" for name, device in COLAB_GPUS.items())
        + " |",
        "| --- | " + " | ".join("---" for _ in COLAB_GPUS) + " |",
    ]
    work = [("full", "03_lstm"), ("full", "04_embedding_lstm"), ("full", "06_fine_tuning"), ("large", "06_fine_tuning")]
    for profile, notebook in work:
        cells = []
        for device in COLAB_GPUS.values():
            estimate = profile_estimate(profile, notebook, device)
            method = f"{estimate.method}, " if estimate.method else ""
            cells.append(f"{format_duration(estimate.seconds)} ({method}{estimate.peak_gib:.1f} GiB)")
        rows.append(f"| `{profile}`: {notebook} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def distributed_table() -> str:
    """Markdown: estimated time (one epoch) and memory per GPU of fine-tuning each study model on the
    full profile's ads and on the whole corpus, on one T4, Kaggle's 2 x T4 and an 8-GPU server
    (:func:`adgen_utils.series.estimates.distributed_finetune`)."""
    rows = [
        "| estimated: one epoch (`estimates.distributed_finetune`) | "
        + " | ".join(f"{name} ({precision_for(device)})" for name, (device, _) in SERVERS.items())
        + " |",
        "| --- | " + " | ".join("---" for _ in SERVERS) + " |",
    ]
    full_ads = profile_values("full", "06_fine_tuning")["max_train_ads"]
    for model in ("EleutherAI/gpt-neo-125M", "EleutherAI/gpt-neo-1.3B"):
        for ads, corpus in ((full_ads, "the full profile's"), (FULL_CORPUS_DISTINCT_ADS, "the whole corpus's")):
            cells = []
            for device, processes in SERVERS.values():
                parameters = KNOWN_PARAMETERS[model]
                fsdp = processes == 8 and parameters * 16 / 2**30 > 0.7 * device.memory_gib
                estimate = distributed_finetune(parameters, ads, device, processes, fsdp=fsdp)
                shard = ", FSDP" if fsdp else ""
                cells.append(
                    f"{format_duration(estimate.seconds)} ({estimate.method}{shard}, {estimate.peak_gib:.1f} GiB per GPU)"
                )
            rows.append(f"| `{model}`, {corpus} {ads:,} ads | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _replace_section(text: str, section: str, body: str) -> str:
    begin, end = (m.format(section) for m in MARKERS)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{README} has no '{begin}' ... '{end}' section")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)


def readme_text(text: str, url: str, root: Path | None = None) -> str:
    """``text`` (the README) with its badges, repository links, generated tables and measured section
    (from ``root``'s ``results/``) brought up to date."""
    owner, name = check_github_url(url)
    text = _COLAB_LINK.sub(lambda m: badge_link(url, m.group(1)), text)
    text = _CLONE_COMMAND.sub(f"git clone https://github.com/{owner}/{name}", text)
    text = _replace_section(text, "profiles", profiles_table())
    text = _replace_section(text, "estimates", estimates_table())
    text = _replace_section(text, "measured", measured_section(results_dir(root)))
    text = _replace_section(text, "distributed", distributed_table())
    return _replace_section(text, "parameters", parameters_tables())


# ---------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------


def sync(check: bool = False, root: Path | None = None) -> list[str]:
    """Bring every notebook and the README in line with the declarations. Returns the files that
    differed (rewritten unless ``check``)."""
    root = Path(root or repository_root())
    url = repository_url(root)
    differing = []
    for path in sorted((root / NOTEBOOKS_FOLDER).glob("[0-9][0-9]_*.ipynb")):
        if path.stem in NOTEBOOKS and sync_notebook(path, url, check):
            differing.append(str(path.relative_to(root)))
    readme = root / README
    old = readme.read_text()
    new = readme_text(old, url, root)
    if new != old:
        differing.append(README)
        if not check:
            readme.write_text(new)
    return differing
