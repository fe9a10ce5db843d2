"""Results of scripts/colab_check.sh as JSON (standard library only; any Python 3.9+ runs it).

    report.py notebook EXECUTED.ipynb --seconds S --rc RC --base BASE.json --overlay OVERLAY.json
                       [--log PAPERMILL.log] [--drive DIR] [--pip-check FILE]
                       [--colab-log FILE] > result.json
    report.py summary RESULT.json... [--base-freeze FILE] [--head SHA] > summary.json

``notebook`` reads one executed notebook: ok/failed, the failing cell (index, tags, first source
line), the error's name and message, the setup cell's output and duration, and which packages
the setup cell's ``pip install`` put into the overlay (compared with the Colab-like base).
``summary`` joins the per-notebook results and lists every Colab package that some notebook's
setup changed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# Colab's own stack: a setup cell that replaces one of these leaves the user's runtime different
# from Colab's (a newer ipykernel even breaks the Colab kernel). Names as pip normalises them.
PROTECTED = (
    "torch",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "ipykernel",
    "ipython",
    "ipywidgets",
    "jupyter-client",
    "jupyter-core",
    "traitlets",
    "tornado",
    "pyzmq",
    "notebook",
    "widgetsnbextension",
    "jupyterlab-widgets",
    "protobuf",
    "triton",
)
PROTECTED_PREFIXES = ("nvidia-", "cuda-")
# Upgrades the project declares on purpose (GUIDE: notebooks 05-08 need transformers >= 5.23).
EXPECTED = {"transformers"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def packages(path: str) -> dict[str, dict]:
    """``pip list --format=json`` output as {normalised name: entry}."""
    return {normalise(p["name"]): p for p in json.loads(Path(path).read_text() or "[]")}


def protected(name: str) -> bool:
    return name in PROTECTED or name.startswith(PROTECTED_PREFIXES)


def pip_changes(base: dict[str, dict], overlay: dict[str, dict]) -> dict:
    """What the setup cell installed, split into upgrades of base packages and additions."""
    changed, added = {}, {}
    for name, entry in sorted(overlay.items()):
        if name == "adgen":
            continue  # the package itself, installed editable from the clone
        if name in base:
            if base[name]["version"] != entry["version"]:
                changed[name] = f"{base[name]['version']} -> {entry['version']}"
            else:
                changed[name] = f"{entry['version']} reinstalled"
        else:
            added[name] = entry["version"]
    return {
        "changed": changed,
        "added": added,
        "colab_stack_touched": sorted(n for n in changed if protected(n)),
        "other_changes": sorted(n for n in changed if not protected(n) and n not in EXPECTED),
    }


def text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        text = output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


def source_of(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def notebook_result(args) -> dict:
    result = {"notebook": Path(args.executed).stem, "seconds": round(args.seconds, 1), "papermill_rc": args.rc}
    path = Path(args.executed)
    cells = json.loads(path.read_text())["cells"] if path.is_file() else []
    code = [(i, c) for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    error = None
    for i, cell in code:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                trace = [ANSI.sub("", line) for line in output.get("traceback", [])]
                error = {
                    "cell_index": i,
                    "cell_tags": cell.get("metadata", {}).get("tags", []),
                    "cell_first_line": (source_of(cell).strip().splitlines() or [""])[0],
                    "name": output.get("ename"),
                    "message": ANSI.sub("", output.get("evalue", "")),
                    "traceback_tail": "\n".join(trace)[-3000:],
                }
                break
        if error:
            break
    executed = sum(1 for _, c in code if c.get("execution_count") is not None)
    result["cells_executed"] = f"{executed}/{len(code)}"
    if error is None and args.rc == 0 and cells:
        result["status"] = "ok"
    else:
        result["status"] = "failed"
        if error is None:
            log = Path(args.log).read_text(errors="replace") if args.log and Path(args.log).is_file() else ""
            timeout = args.rc in (124, 137)
            error = {
                "name": "timeout" if timeout else "papermill",
                "message": "papermill ran past COLAB_SIM_TIMEOUT and was stopped"
                if timeout
                else f"papermill exited with {args.rc} and no cell holds an error",
                "log_tail": ANSI.sub("", log)[-3000:],
            }
            unfinished = next(
                ((i, c) for i, c in code if c.get("metadata", {}).get("papermill", {}).get("status") != "completed"),
                None,
            )
            if unfinished:
                i, cell = unfinished
                error.update(
                    cell_index=i,
                    cell_tags=cell.get("metadata", {}).get("tags", []),
                    cell_first_line=(source_of(cell).strip().splitlines() or [""])[0],
                )
        result["error"] = error
    setup = next((c for _, c in code if "setup" in c.get("metadata", {}).get("tags", [])), None)
    if setup is not None:
        result["setup_ran"] = setup.get("execution_count") is not None
        result["setup_seconds"] = setup.get("metadata", {}).get("papermill", {}).get("duration")
        result["setup_output"] = "".join(text_of(o) for o in setup.get("outputs", []))[-1500:]
    else:
        result["setup_ran"] = False
        result["setup_output"] = "no cell tagged 'setup' in the notebook"
    result["pip"] = pip_changes(packages(args.base), packages(args.overlay))
    if args.pip_check and Path(args.pip_check).is_file():
        result["pip"]["check"] = Path(args.pip_check).read_text().strip()
    if args.colab_log:
        log = Path(args.colab_log)
        result["colab_calls"] = log.read_text().splitlines() if log.is_file() else []
    if args.drive and Path(args.drive).is_dir():
        files = [p for p in Path(args.drive).rglob("*") if p.is_file()]
        result["drive_files"] = {"count": len(files), "megabytes": round(sum(p.stat().st_size for p in files) / 1e6, 1)}
    return result


def summary(args) -> dict:
    results = [json.loads(Path(p).read_text()) for p in args.results]
    touched: dict[str, list[str]] = {}
    for r in results:
        for name, change in {**r["pip"]["changed"]}.items():
            touched.setdefault(f"{name} {change}", []).append(r["notebook"])
    return {
        "commit": args.head,
        # A setup that replaced Colab's torch, TensorFlow or kernel stack fails the check too.
        "all_ok": bool(results) and all(r["status"] == "ok" and not r["pip"]["colab_stack_touched"] for r in results),
        "notebooks": {r["notebook"]: {k: v for k, v in r.items() if k != "notebook"} for r in results},
        "colab_packages_changed_by_setup": touched,
        "colab_stack_touched": sorted({n for r in results for n in r["pip"]["colab_stack_touched"]}),
        "base_freeze": args.base_freeze,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("notebook")
    one.add_argument("executed")
    one.add_argument("--seconds", type=float, required=True)
    one.add_argument("--rc", type=int, required=True)
    one.add_argument("--base", required=True)
    one.add_argument("--overlay", required=True)
    one.add_argument("--log")
    one.add_argument("--drive")
    one.add_argument("--pip-check", help="output of `pip check` in the overlay after the run")
    one.add_argument("--colab-log", help="the google.colab stand-in's record of its calls")
    many = sub.add_parser("summary")
    many.add_argument("results", nargs="*")
    many.add_argument("--base-freeze")
    many.add_argument("--head")
    args = parser.parse_args(argv)
    result = notebook_result(args) if args.command == "notebook" else summary(args)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
