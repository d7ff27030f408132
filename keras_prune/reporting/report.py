"""`report`: a Markdown record of one pruning run, with its plots and a JSON pruning record.

It documents the decisions (the schedule, granularity, mask, criterion and allocation each
pruned layer got, next to `kp.prune`'s defaults), the per-layer result, the numbers before and
after (accuracy, parameters, nonzeros, file bytes, latency, arena), the export checks, and where
the dense and pruned versions of the model are. Everything in it is read from the models and
results passed in, so the report states what the run did, not what it was asked to do.
"""

import dataclasses
import datetime
import inspect
import json
import os
import warnings

import keras
import numpy as np

from keras_prune.core import allocation as allocation_lib
from keras_prune.core import criteria as criteria_lib
from keras_prune.core import granularity as granularity_lib
from keras_prune.core import mask_types, validation
from keras_prune.layers.wrapper import find_wrappers
from keras_prune.pruning import prune, strip
from keras_prune.reporting import plots as plots_lib
from keras_prune.reporting import pruning_plots
from keras_prune.reporting.summary import weight_rows

# The wrapper attribute holding each setting, and the registry that turns kp.prune's default
# (a name) into the object a wrapper holds, so "default" is decided by comparing like with like.
_SETTINGS = {
    "schedule": ("schedule", None),
    "granularity": ("granularity", granularity_lib.get),
    "mask": ("mask_type", mask_types.get),
    "criterion": ("criterion", criteria_lib.get),
}
_DEFAULT_SCHEDULE = "ConstantSparsity(sparsity=0.5) (kp.prune's schedule=None)"


def describe(value):
    """A one-line text for a setting: its class and configuration, or the value itself.

    Example:

    ```python
    describe(kp.PolynomialDecay(0.0, 0.9, 0, 100))  # "PolynomialDecay(initial_sparsity=0.0, ...)"
    ```
    """
    if value is None or isinstance(value, str | int | float | bool):
        return repr(value) if isinstance(value, str) else str(value)
    if hasattr(value, "get_config"):
        config = value.get_config()
        arguments = ", ".join(f"{key}={item!r}" for key, item in config.items())
        return f"{type(value).__name__}({arguments})"
    return repr(value)


def _prune_defaults():
    parameters = inspect.signature(prune).parameters
    return {name: parameters[name].default for name in _SETTINGS}


def decisions(pruned_model, allocation=None):
    """What each pruned layer was pruned with, grouped: `[{"layers", setting: {value, default}}]`.

    Args:
        pruned_model: the model `kp.prune` returned (wrappers still in).
        allocation: the `allocation` given to `kp.PruningCallback` (None: each tensor at the
            scheduled sparsity).

    Example:

    ```python
    decisions(pruned)[0]["criterion"]  # {"value": "Magnitude()", "default": True}
    ```
    """
    defaults = _prune_defaults()
    groups = {}
    for wrapper in find_wrappers(pruned_model):
        entry = {}
        for setting, (attribute, get) in _SETTINGS.items():
            value = getattr(wrapper, attribute)
            default = defaults[setting]
            if default is None:
                is_default = False
            else:
                is_default = describe(get(default)) == describe(value)
            entry[setting] = {"value": describe(value), "default": is_default}
        key = json.dumps(entry, sort_keys=True)
        groups.setdefault(key, {"layers": [], **entry})["layers"].append(wrapper.name)
    allocation_text = (
        "None (each tensor at the scheduled sparsity)"
        if allocation is None
        else describe(allocation_lib.get(allocation))
    )
    for group in groups.values():
        group["allocation"] = {"value": allocation_text, "default": allocation is None}
    return list(groups.values())


def _weight_totals(model):
    """`(parameters, nonzeros)` over every weight of a plain model."""
    parameters = nonzeros = 0
    for weight in model.weights:
        array = np.asarray(keras.ops.convert_to_numpy(weight))
        parameters += array.size
        nonzeros += int(np.count_nonzero(array))
    return parameters, nonzeros


def _export_dict(result):
    if result is None:
        return None
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    latency = data.get("latency_us") or {}
    return {
        "path": data.get("path"),
        "target": data.get("target"),
        "file_bytes": data.get("file_bytes"),
        "gzip_bytes": data.get("gzip_bytes"),
        "latency_us": latency.get("xnnpack", latency.get("builtin")),
        "latency_us_builtin": latency.get("builtin"),
        "arena_bytes": data.get("arena_bytes"),
        "passed": data.get("passed"),
        "checks": [
            {
                key: getattr(check, key, None) if not isinstance(check, dict) else check.get(key)
                for key in ("runtime", "passed", "max_abs_error", "tolerance", "top1_agreement")
            }
            for check in data.get("checks", [])
        ],
        "sparse_tensors": len(data.get("sparse_tensors") or []),
        "extra_files": list(data.get("extra_files") or []),
        "notes": list(data.get("notes") or []),
    }


def comparison_rows(record):
    """`[(metric, before, after)]` of a pruning record: the one before/after table of a run.

    Example:

    ```python
    for metric, before, after in comparison_rows(result.record): ...
    ```
    """
    rows = [(name, pair[0], pair[1]) for name, pair in record["metrics"].items()]
    rows.append(("parameters", record["dense"]["parameters"], record["pruned"]["parameters"]))
    rows.append(("nonzero parameters", record["dense"]["nonzeros"], record["pruned"]["nonzeros"]))
    for target, pair in record["exports"].items():
        before, after = pair.get("dense") or {}, pair.get("pruned") or {}
        rows.append((f"{target} file bytes", before.get("file_bytes"), after.get("file_bytes")))
        rows.append((f"{target} gzip bytes", before.get("gzip_bytes"), after.get("gzip_bytes")))
        if before.get("latency_us") is not None or after.get("latency_us") is not None:
            rows.append(
                (f"{target} LiteRT latency (us)", before.get("latency_us"), after.get("latency_us"))
            )
        if before.get("arena_bytes") is not None or after.get("arena_bytes") is not None:
            rows.append(
                (f"{target} TFLM arena bytes", before.get("arena_bytes"), after.get("arena_bytes"))
            )
    return rows


def format_value(value):
    """A number as the report prints it: fractions with 4 decimals, counts with separators."""
    if value is None:
        return "-"
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:.4f}" if abs(value) <= 1 else f"{value:,.1f}"
    return f"{int(value):,}"


def _ratio(before, after):
    if before in (None, 0) or after is None:
        return "-"
    return f"{after / before:.2f}x"


def format_table(rows):
    """The before/after rows as a plain-text table (for the terminal)."""
    header = ("", "before", "after", "after/before")
    lines = [
        (name, format_value(before), format_value(after), _ratio(before, after))
        for name, before, after in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]
    render = lambda line: "  ".join(  # noqa: E731
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(line, widths, strict=True))
    )
    rule = "-" * (sum(widths) + 6)
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


@dataclasses.dataclass
class RunReport:
    """What `report` wrote.

    Attributes:
        path: the Markdown file.
        record_path: the JSON pruning record.
        plots: `{name: PNG path}` (empty when matplotlib is missing).
        record: the pruning record (the JSON's content).
    """

    path: str
    record_path: str
    plots: dict
    record: dict

    @property
    def rows(self):
        """The before/after rows, as in the report."""
        return comparison_rows(self.record)

    def __str__(self):
        return format_table(self.rows)


def _check_pair(name, value):
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"Expected `metrics[{name!r}]` as (before, after). Received: {value!r}")
    return [None if item is None else float(item) for item in value]


def _history_logs(history):
    if history is None:
        return {}
    logs = getattr(history, "history", history)
    return {key: [float(v) for v in values] for key, values in logs.items()}


def build_record(
    pruned_model,
    *,
    dense_model=None,
    stripped_model=None,
    allocation=None,
    metrics=None,
    exports=None,
    model_paths=None,
    history=None,
):
    """The pruning record `report` writes, as a dict of plain data; see `report` for the
    arguments.

    Example:

    ```python
    record = build_record(pruned, dense_model=model, metrics={"accuracy": (0.97, 0.96)})
    ```
    """
    if not isinstance(pruned_model, keras.Model):
        raise TypeError(
            f"Expected `pruned_model` to be the keras.Model kp.prune returned. Received: "
            f"{type(pruned_model).__name__}"
        )
    wrappers = find_wrappers(pruned_model)
    in_place = getattr(getattr(pruned_model, "pruning_report", None), "in_place", False)
    if stripped_model is None and in_place:
        raise ValueError(
            "Expected `stripped_model` for a model pruned in place (a subclassed model): "
            "stripping it here would change your model. Pass "
            "`stripped_model=kp.strip(pruned_model)` when you are done training."
        )
    if stripped_model is None:
        stripped_model = strip(pruned_model) if wrappers else pruned_model
    pruned_report = getattr(pruned_model, "pruning_report", None)
    layers = [
        {
            "layer": row.layer,
            "weight": row.weight,
            "shape": list(row.shape),
            "params": row.params,
            "nonzeros": row.nonzeros,
            "sparsity": round(row.sparsity, 6),
            "pruned": row.pruned,
        }
        for row in weight_rows(pruned_model)
    ]
    parameters, nonzeros = _weight_totals(stripped_model)
    record = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "model": pruned_model.name,
        "decisions": decisions(pruned_model, allocation),
        "skipped": dict(getattr(pruned_report, "skipped", {}) or {}),
        "layers": layers,
        "pruned": {"parameters": parameters, "nonzeros": nonzeros},
        "dense": None,
        "metrics": {str(name): _check_pair(name, pair) for name, pair in (metrics or {}).items()},
        "exports": {},
        "paths": {str(k): os.path.abspath(v) for k, v in (model_paths or {}).items()},
        "history": _history_logs(history),
    }
    if dense_model is not None:
        dense_parameters, dense_nonzeros = _weight_totals(dense_model)
        record["dense"] = {"parameters": dense_parameters, "nonzeros": dense_nonzeros}
    else:
        record["dense"] = {"parameters": None, "nonzeros": None}
    for target, pair in (exports or {}).items():
        if not isinstance(pair, dict):
            raise ValueError(
                f'Expected `exports[{target!r}]` as {{"dense": result, "pruned": result}}. '
                f"Received: {pair!r}"
            )
        record["exports"][str(target)] = {
            key: _export_dict(pair.get(key)) for key in ("dense", "pruned")
        }
    return record


def _markdown(record, plot_names, title, plot_error, directory):
    def shown(path):
        # Relative to the report, so its links work wherever the folder is moved or published.
        return os.path.relpath(os.path.abspath(path), directory)

    lines = [f"# {title}", ""]
    lines += [
        f"Model `{record['model']}`, written {record['created']} (Keras {record['keras_version']}, "
        f"{record['backend']} backend).",
        "",
        "## Before and after",
        "",
        "| | before | after | after/before |",
        "|---|---:|---:|---:|",
    ]
    for name, before, after in comparison_rows(record):
        lines.append(
            f"| {name} | {format_value(before)} | {format_value(after)} | {_ratio(before, after)} |"
        )
    if "before_after" in plot_names:
        lines += ["", f"![before and after]({plot_names['before_after']})"]
    lines += ["", "## What was pruned, and how", ""]
    for group in record["decisions"]:
        lines.append(f"Layers {', '.join(f'`{name}`' for name in group['layers'])}:")
        lines.append("")
        lines.append("| setting | value | |")
        lines.append("|---|---|---|")
        for setting in (*_SETTINGS, "allocation"):
            entry = group[setting]
            origin = "kp.prune's default" if entry["default"] else "chosen"
            if setting == "allocation":
                origin = "PruningCallback's default" if entry["default"] else "chosen"
            lines.append(f"| {setting} | `{entry['value']}` | {origin} |")
        lines.append("")
    if not record["decisions"]:
        lines += ["No layer is wrapped for pruning.", ""]
    if record["skipped"]:
        lines.append("Left dense:")
        lines.append("")
        lines += [f"- `{name}`: {reason}" for name, reason in record["skipped"].items()]
        lines.append("")
    lines += [
        "## Per layer",
        "",
        "| layer | weight | shape | weights | nonzero | sparsity | pruned |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for row in record["layers"]:
        shape = "x".join(str(d) for d in row["shape"])
        lines.append(
            f"| {row['layer']} | {row['weight']} | {shape} | {row['params']:,} | "
            f"{row['nonzeros']:,} | {row['sparsity']:.1%} | {'yes' if row['pruned'] else 'no'} |"
        )
    for key, alt in (("layer_sparsity", "per-layer sparsity"), ("schedule", "sparsity schedule")):
        if key in plot_names:
            lines += ["", f"![{alt}]({plot_names[key]})"]
    history = record["history"]
    if history.get("sparsity"):
        lines += ["", "## Training", "", "| epoch | " + " | ".join(history) + " |"]
        lines.append("|---:|" + "---:|" * len(history))
        for epoch in range(len(history["sparsity"])):
            cells = " | ".join(f"{history[key][epoch]:.4f}" for key in history)
            lines.append(f"| {epoch + 1} | {cells} |")
    if record["exports"]:
        lines += ["", "## Export", ""]
        lines += ["| target | model | file | bytes | checks | LiteRT latency (us) | TFLM arena |"]
        lines += ["|---|---|---|---:|---|---:|---:|"]
        for target, pair in record["exports"].items():
            for version, result in pair.items():
                if result is None:
                    continue
                checks = ", ".join(
                    f"{check['runtime']} {'PASS' if check['passed'] else 'FAIL'}"
                    for check in result["checks"]
                )
                lines.append(
                    f"| {target} | {version} | `{shown(result['path'])}` | "
                    f"{format_value(result['file_bytes'])} | {checks} | "
                    f"{format_value(result['latency_us'])} | "
                    f"{format_value(result['arena_bytes'])} |"
                )
        lines.append("")
        for target, pair in record["exports"].items():
            for version, result in pair.items():
                extras = (result or {}).get("extra_files", [])
                if extras:
                    wrote = ", ".join(f"`{shown(extra)}`" for extra in extras)
                    lines.append(f"- {target} ({version}) also wrote {wrote}.")
                for note in (result or {}).get("notes", []):
                    lines.append(f"- {target} ({version}): {note}.")
    if record["paths"]:
        lines += ["", "## Files", ""]
        lines += [f"- {name}: `{shown(path)}`" for name, path in record["paths"].items()]
    if plot_error:
        lines += ["", f"Plots not drawn: {plot_error}"]
    return "\n".join(lines) + "\n"


def report(
    path,
    pruned_model,
    *,
    dense_model=None,
    stripped_model=None,
    schedule=None,
    history=None,
    steps_per_epoch=None,
    allocation=None,
    metrics=None,
    exports=None,
    model_paths=None,
    plots=True,
    title="Pruning report",
):
    """Writes a Markdown report of a pruning run, its PNG plots and its JSON pruning record.

    The record is saved next to the pruned model (`<model stem>.pruning.json`, given
    `model_paths["pruned"]`) or next to the report.

    Args:
        path: the Markdown file to write; the PNGs go next to it (`<stem>_*.png`).
        pruned_model: the model `kp.prune` returned, wrappers still in (they hold the settings).
        dense_model: the model before pruning, for the "before" column.
        stripped_model: `kp.strip(pruned_model)`, if already made (else made here; required
            for subclassed models, which `kp.prune` prunes in place).
        schedule: the schedule to draw; default: the first wrapper's.
        history: the `History` of the `fit` with `kp.PruningCallback` (its `sparsity` log).
        steps_per_epoch: batches per epoch of that `fit` (places `history` on the step axis).
        allocation: the `allocation` given to `kp.PruningCallback`.
        metrics: `{name: (before, after)}`, e.g. `{"test accuracy": (0.97, 0.96)}`.
        exports: `{target: {"dense": ExportResult, "pruned": ExportResult}}` (either may be
            missing), as `kp.export.to_tflite` returns them.
        model_paths: `{name: path}` of the saved versions, e.g. `{"dense": ..., "pruned": ...}`.
        plots: draw the PNGs (needs matplotlib: `pip install keras-prune[plots]`; without it
            the report is written without pictures and a warning says how to get them).
        title: the report's heading.

    Returns:
        A `RunReport` (`print` it for the before/after table).

    Example:

    ```python
    history = pruned.fit(
        x, y, epochs=2, batch_size=32, callbacks=[kp.PruningCallback()], verbose=0
    )
    result = kp.reporting.report(
        "artifacts/report.md", pruned, dense_model=model, history=history, steps_per_epoch=2,
        metrics={"test accuracy": (0.97, 0.96)},
    )
    print(result)
    ```
    """
    path = validation.check_path("path", path)
    plots = validation.check_bool("plots", plots)
    record = build_record(
        pruned_model,
        dense_model=dense_model,
        stripped_model=stripped_model,
        allocation=allocation,
        metrics=metrics,
        exports=exports,
        model_paths=model_paths,
        history=history,
    )
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    drawn, plot_error = {}, None
    if plots:
        try:
            drawn = _draw(record, pruned_model, schedule, history, steps_per_epoch, directory, stem)
        except ImportError as error:
            plot_error = str(error)
            warnings.warn(plot_error, stacklevel=2)
    relative = {name: os.path.basename(png) for name, png in drawn.items()}
    pruned_path = record["paths"].get("pruned")
    if pruned_path:
        record_path = os.path.splitext(pruned_path)[0] + ".pruning.json"
    else:
        record_path = os.path.join(directory, f"{stem}.pruning.json")
    record["paths"]["pruning record"] = os.path.abspath(record_path)
    record["paths"]["report"] = os.path.abspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(record_path)), exist_ok=True)
    with open(record_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(_markdown(record, relative, title, plot_error, directory))
    return RunReport(path=path, record_path=record_path, plots=drawn, record=record)


def _draw(record, pruned_model, schedule, history, steps_per_epoch, directory, stem):
    plots_lib.pyplot()  # raises the ImportError with the install hint before anything is drawn
    drawn = {}
    target = os.path.join(directory, f"{stem}_layer_sparsity.png")
    drawn["layer_sparsity"] = pruning_plots.plot_layer_sparsity(pruned_model, target)
    wrappers = find_wrappers(pruned_model)
    if schedule is None and wrappers:
        schedule = wrappers[0].schedule
    if schedule is not None:
        use_history = history is not None and steps_per_epoch is not None
        drawn["schedule"] = pruning_plots.plot_sparsity_schedule(
            schedule,
            os.path.join(directory, f"{stem}_schedule.png"),
            history=history if use_history else None,
            steps_per_epoch=steps_per_epoch if use_history else None,
        )
    rows = [row for row in comparison_rows(record) if None not in row[1:]]
    if rows:
        drawn["before_after"] = pruning_plots.plot_before_after(
            rows, os.path.join(directory, f"{stem}_before_after.png"), labels=("dense", "pruned")
        )
    return drawn
