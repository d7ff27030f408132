"""Model zoo: every model of tests/zoo through every keras_prune stage, as one table.

Stages (tests/zoo/stages.py): prune (unstructured 50%, a few `fit` steps with
`kp.PruningCallback`, sparsity and kernel coverage checked), strip (same outputs, no
keras_prune class left), save/load (`.keras`, pruned and stripped), shrink (channel pruning,
`kp.shrink`, same outputs, fewer MACs), MACs (`kp.reporting.macs.count` nonzero for every layer that
multiplies), export (`kp.export.to_tflite(target="mobile")` verified on LiteRT, in a child
process). Prints one line per model as it finishes, then the table and the failure reasons.

Run: `python benchmarks/model_zoo.py` (the whole zoo, 10-30 minutes on 2 cores),
`--models residual_cnn hub_bert` for some, `--write-docs` to also write docs/model_zoo.md,
`--json results.json` for every result with its full detail (tracebacks included).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import keras  # noqa: E402

from tests.zoo import models as zoo_models  # noqa: E402
from tests.zoo import stages  # noqa: E402

COLUMNS = (
    ("prune", "prune"),
    ("strip", "strip"),
    ("save/load", "save_load"),
    ("shrink", "shrink"),
    ("MACs ratio", "shrink"),
    ("MACs", "macs"),
    ("export", "export"),
)
SHORT_REASON = 60
DOCS_PATH = os.path.join(ROOT, "docs", "model_zoo.md")


def _human(value):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return str(int(value))


def _short(text):
    text = " ".join(text.split())
    return text if len(text) <= SHORT_REASON else text[: SHORT_REASON - 1] + "…"


class Reasons:
    """Numbers each distinct fail / skip reason (F1, S1, ...) and remembers where it occurred."""

    def __init__(self):
        self.labels = {}
        self.where = {}

    def label(self, status, reason, model, stage):
        key = (status, reason)
        if key not in self.labels:
            prefix = "F" if status == "fail" else "S"
            count = sum(1 for other, _ in self.labels if other == status)
            self.labels[key] = f"{prefix}{count + 1}"
        self.where.setdefault(key, []).append(f"{model} ({stage})")
        return self.labels[key]

    def lines(self):
        ordered = sorted(self.labels.items(), key=lambda item: (item[1][0], int(item[1][1:])))
        for (_, reason), label in ordered:
            yield label, reason, self.where[(_, reason)]


def _cell(column, stage, result, reasons, model):
    if column == "MACs ratio":
        ratio = result.metrics.get("macs_ratio")
        return f"{ratio:.2f}x" if result.status == "pass" and ratio else "-"
    if result.status == "pass":
        if stage == "macs":
            return _human(result.metrics["macs"])
        if stage == "prune":
            return f"pass ({result.metrics['kernel_coverage']:.0%})"
        if stage == "export":
            return f"pass ({result.metrics['file_bytes'] / 1e6:.2f} MB)"
        return "pass"
    if result.status == "skip" and result.metrics.get("blocked_by"):
        return f"skip: {result.reason}"
    label = reasons.label(result.status, result.reason, model, stage)
    word = "FAIL" if result.status == "fail" else "skip"
    return f"{word} [{label}] {_short(result.reason)}"


def run_one(name):
    """`(description, {stage: StageResult})` of one model, run in this process."""
    run = stages.ZooRun(name)
    results = run.results()
    description = run.description
    run.release()
    return description, results


def run_isolated(name):
    """`run_one` in a child process: one model's memory is freed when it ends, and a crash
    (a signal from TensorFlow) fails that model's stages instead of the whole run."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "result.json")
        command = [sys.executable, os.path.abspath(__file__), "--one", name, "--json", path]
        process = subprocess.run(command, capture_output=True, text=True)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as file:
                row = json.load(file)[0]
            results = {
                stage: stages.StageResult(value["status"], value["detail"], value["metrics"])
                for stage, value in row["stages"].items()
            }
            return row["description"], results
    how = (
        f"signal {-process.returncode}" if process.returncode < 0 else f"code {process.returncode}"
    )
    crashed = stages.failed(f"zoo process died ({how})\n\n{process.stderr[-4000:]}")
    return "", {stage: crashed for stage in stages.STAGES}


def run_zoo(names, isolated=True, verbose=True):
    """`[(name, description, {stage: StageResult}, seconds)]`, one line printed per model."""
    rows = []
    for index, name in enumerate(names, 1):
        start = time.perf_counter()
        description, results = (run_isolated if isolated else run_one)(name)
        seconds = time.perf_counter() - start
        rows.append((name, description, results, seconds))
        if verbose:
            summary = " ".join(f"{stage}={results[stage].status}" for stage in stages.STAGES)
            print(f"[{index:2d}/{len(names)}] {name:<24} {seconds:7.1f}s  {summary}", flush=True)
    return rows


def table_rows(rows):
    reasons = Reasons()
    cells = []
    for name, _, results, _ in rows:
        cells.append(
            [name]
            + [_cell(column, stage, results[stage], reasons, name) for column, stage in COLUMNS]
        )
    return cells, reasons


def _totals(rows):
    counts = []
    for stage in stages.STAGES:
        statuses = [results[stage].status for _, _, results, _ in rows]
        counts.append(
            f"{stage}: {statuses.count('pass')} pass, {statuses.count('skip')} skip, "
            f"{statuses.count('fail')} fail"
        )
    return counts


def print_table(rows):
    cells, reasons = table_rows(rows)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(markdown(rows))
        return
    table = Table(title="keras_prune model zoo", show_lines=False)
    table.add_column("model", no_wrap=True)
    for column, _ in COLUMNS:
        table.add_column(column, overflow="fold", max_width=34)
    styles = {"pass": "green", "FAIL": "red", "skip": "yellow"}
    for row in cells:
        styled = [row[0]]
        for cell in row[1:]:
            style = next((s for word, s in styles.items() if cell.startswith(word)), None)
            styled.append(f"[{style}]{cell}[/{style}]" if style else cell)
        table.add_row(*styled)
    console = Console(width=max(160, Console().width))
    console.print(table, markup=True, highlight=False)
    for line in _totals(rows):
        console.print(line, markup=False, highlight=False)
    console.print("\nReasons:", markup=False)
    for label, reason, where in reasons.lines():
        console.print(
            f"  [{label}] {reason}\n       in {len(where)}: {', '.join(where)}",
            markup=False,
            highlight=False,
        )


def _escape(text):
    return text.replace("|", "\\|")


def _code(text):
    """`text` as inline code, fenced with two backticks if it holds one."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _versions():
    import tensorflow as tf

    versions = [f"Keras {keras.__version__}", f"TensorFlow {tf.__version__}"]
    try:
        import keras_hub

        versions.append(f"keras-hub {keras_hub.__version__}")
    except ImportError:
        pass
    try:
        # The last commit that changed the library, not the harness.
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", "keras_prune"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        versions.append(f"keras_prune at {commit}")
    except (OSError, subprocess.CalledProcessError):
        pass
    return ", ".join(versions)


def markdown(rows, seconds=None):
    cells, reasons = table_rows(rows)
    header = ["model"] + [column for column, _ in COLUMNS]
    lines = [
        "# Model zoo",
        "",
        "Every model of `tests/zoo/models.py` through every stage of `tests/zoo/stages.py`, "
        "written by `python benchmarks/model_zoo.py --write-docs`"
        + (
            f" ({_versions()}, {datetime.date.today()}"
            + (f", {seconds / 60:.1f} min on this machine" if seconds else "")
            + ")."
        ),
        "",
        "- **prune**: `kp.prune` (unstructured, `ConstantSparsity(0.5)`), a few `fit` steps with "
        "`kp.PruningCallback`; the pruned weights together >= 50% zeros (the default global "
        "allocation), none emptied, and at least "
        f"{stages.MIN_KERNEL_COVERAGE:.0%} of the parameters of Dense / EinsumDense / Conv / "
        "Embedding / RNN kernels (sublayers included) pruned. The percentage is that coverage.",
        "- **strip**: `kp.strip` gives the same outputs (within "
        f"{stages.EXACT_TOLERANCE:g} of the largest output) and leaves no keras_prune class.",
        "- **save/load**: `.keras` round trip of the pruned and the stripped model, same outputs.",
        '- **shrink**: `kp.prune_once(..., granularity="channel")` then `kp.shrink`: outputs '
        f"within {stages.SHRINK_TOLERANCE:g} (relative) of the masked model and fewer MACs; "
        "**MACs ratio** is MACs before / after.",
        "- **MACs**: `kp.reporting.macs.count`, nonzero for every layer that multiplies.",
        '- **export**: `kp.export.to_tflite(stripped, target="mobile")`, verified on LiteRT '
        "(in a child process; the size is the `.tflite` file).",
        "",
        "`skip: prune failed` means the stage needs a stage that failed. Reasons in brackets "
        "are listed below the table.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for row in cells:
        # A stray backtick in a truncated reason would swallow the rest of the row.
        lines.append("| " + " | ".join(_escape(cell).replace("`", "'") for cell in row) + " |")
    lines += ["", "Totals: " + "; ".join(_totals(rows)) + ".", "", "## Reasons", ""]
    for label, reason, where in reasons.lines():
        lines.append(f"- **{label}** {_code(reason)}: {', '.join(where)}")
    lines += ["", "## Models", "", "| model | what it exercises | seconds |", "| --- | --- | --- |"]
    for name, description, _, model_seconds in rows:
        lines.append(f"| {name} | {_escape(description)} | {model_seconds:.0f} |")
    return "\n".join(lines) + "\n"


def _json(rows):
    return [
        {
            "model": name,
            "description": description,
            "seconds": seconds,
            "stages": {
                stage: {
                    "status": result.status,
                    "reason": result.reason,
                    "detail": result.detail,
                    "metrics": result.metrics,
                }
                for stage, result in results.items()
            },
        }
        for name, description, results, seconds in rows
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(zoo_models.BUILDERS),
        metavar="MODEL",
        help=f"models to run (default: all): {', '.join(zoo_models.BUILDERS)}",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"write {DOCS_PATH}")
    parser.add_argument("--markdown", help="also write the Markdown table to this path")
    parser.add_argument("--json", help="write every result (full details) to this JSON file")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every model in this process (faster start, memory grows, a crash ends the run)",
    )
    parser.add_argument("--one", choices=list(zoo_models.BUILDERS), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    warnings.filterwarnings("ignore")

    if arguments.one:  # The child process of run_isolated.
        start = time.perf_counter()
        description, results = run_one(arguments.one)
        rows = [(arguments.one, description, results, time.perf_counter() - start)]
        with open(arguments.json, "w", encoding="utf-8") as file:
            json.dump(_json(rows), file, default=str)
        return

    names = arguments.models or list(zoo_models.BUILDERS)
    start = time.perf_counter()
    rows = run_zoo(names, isolated=not arguments.in_process)
    seconds = time.perf_counter() - start
    print()
    print_table(rows)
    print(f"\n{len(rows)} models in {seconds / 60:.1f} min")
    text = markdown(rows, seconds)
    paths = ([DOCS_PATH] if arguments.write_docs else []) + (
        [arguments.markdown] if arguments.markdown else []
    )
    for path in paths:
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        print(f"wrote {os.path.abspath(path)}")
    if arguments.json:
        with open(arguments.json, "w", encoding="utf-8") as file:
            json.dump(_json(rows), file, indent=1, default=str)
        print(f"wrote {arguments.json}")


if __name__ == "__main__":
    main()
