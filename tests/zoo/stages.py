"""The stages a zoo model goes through, each reported as pass / skip / fail with a reason.

Every stage is a function `(model, inputs) -> StageResult`. A stage never raises: any exception
becomes a "fail" whose detail starts with the exception type and message and keeps the
traceback. A "skip" always names its reason; a stage whose prerequisite failed is skipped as
"<prerequisite> failed", naming the stage that failed first (export after a failed prune says
"prune failed", not "strip skipped").

This is the only file of the harness that calls keras_prune: the entry points are the small
functions under "keras_prune entry points" below, so a rename in the library is a one-line
change here.

The export stage runs in a child process (`python -m tests.zoo.stages export ...`) because the
TFLite converter can kill its process with SIGSEGV; a crash is reported as
"converter crashed (signal N)".
"""

import argparse
import dataclasses
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import keras
import numpy as np

import keras_prune as kp
import keras_prune.export  # noqa: F401  (kp.export, imported explicitly in case __init__ stops)
from tests.zoo import models as zoo_models

layers = keras.layers

STAGES = ("prune", "strip", "save_load", "shrink", "macs", "export")
PREREQUISITES = {
    "prune": (),
    "strip": ("prune",),
    "save_load": ("prune", "strip"),
    "shrink": (),
    "macs": (),
    "export": ("strip",),
}

# Unstructured pruning target and training length: enough steps for the callback to apply the
# schedule and for the optimizer to try to move pruned weights off zero.
TARGET_SPARSITY = 0.5
TRAIN_BATCH_SIZE = 2
# Share of the parameters of Dense / EinsumDense / Conv / Embedding / RNN kernels (wherever they
# sit in the model, sublayers included) that must end up pruned. "Prune any model" means the
# transformer blocks of a BERT are pruned, not only its embeddings.
MIN_KERNEL_COVERAGE = 0.9
# Output tolerances, relative to the largest output magnitude. strip and save / load keep the
# same weights and graph: float rounding only. shrink rebuilds layers with fewer channels
# (other summation orders); docs/structured.md promises max |diff| <= 1e-5 on unit-scale outputs.
EXACT_TOLERANCE = 1e-6
SHRINK_TOLERANCE = 1e-5
CHANNEL_FRACTION = 0.5
# The export child: ResNet50 and DenseNet121 take about two minutes on 2 cores.
EXPORT_TIMEOUT_SECONDS = 900
EXPORT_LATENCY_RUNS = 3

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY_PACKAGE = "keras_prune"


@dataclasses.dataclass
class StageResult:
    """Outcome of one stage on one model.

    Attributes:
        status: "pass", "skip" or "fail".
        detail: why (one line first; for a fail "ExceptionType: message" and the traceback).
        metrics: numbers worth tabulating (seconds, sparsity, MACs, file size, ...).
        artifact: what the next stage needs (the pruned or stripped model); not reported.
    """

    status: str
    detail: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)
    artifact: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def reason(self):
        """The first non-empty line of `detail`."""
        return next((line for line in self.detail.splitlines() if line.strip()), "")


def passed(detail="", **metrics):
    return StageResult("pass", detail, metrics)


def skipped(reason, **metrics):
    return StageResult("skip", reason, metrics)


def failed(reason, **metrics):
    return StageResult("fail", reason, metrics)


def from_exception(error):
    message = str(error).strip() or "(no message)"
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return StageResult("fail", f"{type(error).__name__}: {message}\n\n{trace}")


# -- keras_prune entry points ------------------------------------------------------------------


def prune_model(model):
    schedule = kp.ConstantSparsity(TARGET_SPARSITY, begin_step=0, frequency=1)
    return kp.prune(model, schedule=schedule)


def pruning_callbacks():
    return [kp.PruningCallback()]


def pruned_variables(model):
    """`{id(variable): variable}` of every weight keras_prune prunes in `model`."""
    return {
        id(variable): variable
        for wrapper in kp.layers.find_wrappers(model)
        for variable in wrapper.prunable_weights
    }


def wrapper_count(model):
    return len(kp.layers.find_wrappers(model))


def strip_model(model):
    return kp.strip(model)


def channel_groups(model):
    """`([(prunable, reason)] per channel group, {layer name: reason} for unsupported layers)`."""
    analysis = kp.graph.analyze(model)
    groups = [(group.prunable, group.reason) for group in analysis.groups()]
    return groups, dict(analysis.unsupported)


def mask_channels(model):
    return kp.prune_once(model, CHANNEL_FRACTION, granularity="channel")


def shrink_model(model):
    return kp.shrink(model)


def total_macs(model):
    return kp.reporting.macs.count(model)["macs"]


def layer_macs(model):
    """`[(layer name, MACs)]` per layer as keras_prune counts them."""
    return [(cost.name, cost.macs) for cost in kp.reporting.macs.layer_costs(model)]


def export_tflite(model, path, verification_data):
    """The export result, also when the file disagrees with Keras (then nothing is written)."""
    try:
        return kp.export.to_tflite(
            model,
            path,
            target="mobile",
            verification_data=verification_data,
            latency_runs=EXPORT_LATENCY_RUNS,
        )
    except kp.export.ExportVerificationError as error:
        return error.result


def export_checks(result):
    """`[(runtime, max |error|, tolerance, passed)]` of an export result."""
    return [
        (check.runtime, check.max_abs_error, check.tolerance, check.passed)
        for check in result.checks
    ]


# -- model inspection (harness-owned, so the library is not judged by its own definitions) -----


def sublayers(layer):
    """`layer` and every layer reachable from it through attributes, lists and dicts."""
    found, seen = [], set()

    def visit(value):
        if isinstance(value, keras.layers.Layer):
            if id(value) in seen:
                return
            seen.add(id(value))
            found.append(value)
            for attribute in vars(value).values():
                visit(attribute)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit(layer)
    return found


_CONVOLUTIONS = (
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
    layers.DepthwiseConv1D,
    layers.DepthwiseConv2D,
    layers.SeparableConv1D,
    layers.SeparableConv2D,
)
_RNN_CELLS = (layers.SimpleRNNCell, layers.GRUCell, layers.LSTMCell)
# Leaf layers whose rank >= 2 weights are kernels keras_prune says it prunes (README).
KERNEL_LAYERS = (layers.Dense, layers.EinsumDense, layers.Embedding) + _CONVOLUTIONS + _RNN_CELLS
# Layers that do multiply-accumulates (an Embedding lookup does none).
MAC_LAYERS = (layers.Dense, layers.EinsumDense) + _CONVOLUTIONS + _RNN_CELLS


def kernel_variables(model):
    """`{id: (variable, owning layer)}` of every kernel in `model`, sublayers included."""
    kernels = {}
    for layer in sublayers(model):
        if isinstance(layer, KERNEL_LAYERS):
            for variable in layer.weights:
                # Biases can be rank 2 too: GRU's with reset_after, MHA's per-head ones.
                if len(variable.shape) >= 2 and "bias" not in variable.name:
                    kernels.setdefault(id(variable), (variable, layer))
    return kernels


def _values(outputs):
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(outputs)]


def _difference(expected, received):
    """`(max |expected - received|, max |expected|)` over two output structures; the
    difference is inf when their structures or shapes differ."""
    a, b = _values(expected), _values(received)
    scale = max((float(np.max(np.abs(x))) for x in a if x.size), default=0.0)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return float("inf"), scale
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x.size]
    difference = max((float(np.max(np.abs(x - y))) for x, y in pairs), default=0.0)
    return difference, scale


def _mismatch(expected, received, tolerance):
    """None if `received` matches `expected` within `tolerance` relative to the largest output
    magnitude, else how they differ. Relative, because some zoo models output values far from
    1 (VGG16's logits are ~1e-4 with random weights)."""
    difference, scale = _difference(expected, received)
    if difference <= tolerance * scale:
        return None
    return (
        f"max |diff| {difference:.3g}, outputs up to {scale:.3g} (tolerance {tolerance:g} relative)"
    )


def _predict(model, inputs):
    return model(inputs, training=False)


def _generated_targets(model, inputs):
    """Random regression targets shaped like the model's outputs."""
    rng = np.random.default_rng(zoo_models.SEED)
    return keras.tree.map_structure(
        lambda output: rng.standard_normal(tuple(output.shape)).astype("float32"),
        _predict(model, inputs),
    )


def _library_classes(model):
    """Names of keras_prune objects left in `model`: layers, weight constraints, config."""
    found = []
    for layer in sublayers(model):
        if type(layer).__module__.split(".")[0] == LIBRARY_PACKAGE:
            found.append(f"layer {layer.name} ({type(layer).__name__})")
        for variable in layer.weights:
            constraint = getattr(variable, "constraint", None)
            if type(constraint).__module__.split(".")[0] == LIBRARY_PACKAGE:
                found.append(f"constraint {type(constraint).__name__} on {variable.path}")
    config = json.dumps(keras.saving.serialize_keras_object(model), default=str)
    for match in sorted(set(re.findall(r'"(keras_prune[>.][\w.>]*)"', config))):
        found.append(f"config names {match}")
    return sorted(set(found))


# -- the stages --------------------------------------------------------------------------------


def prune(model, inputs):
    """`kp.prune` (unstructured, constant 50%, its default global allocation), a few `fit`
    steps with `kp.PruningCallback`, then the pruned weights together must be >= 50% zeros
    with no tensor emptied, and they must cover most of the model's kernels."""
    pruned = prune_model(model)
    targets = _generated_targets(model, inputs)
    pruned.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    pruned.fit(
        inputs,
        targets,
        batch_size=TRAIN_BATCH_SIZE,
        epochs=1,
        verbose=0,
        callbacks=pruning_callbacks(),
    )
    pruned_weights = pruned_variables(pruned)
    if not pruned_weights:
        return failed("kp.prune wrapped no weights")
    # The default allocation ranks all pruned weights together: exactly the target overall
    # (one weight of rounding allowed), each tensor keeping at least one weight.
    total_size = total_zeros = 0
    emptied = []
    for variable in pruned_weights.values():
        values = np.asarray(keras.ops.convert_to_numpy(variable))
        total_size += values.size
        total_zeros += values.size - int(np.count_nonzero(values))
        if not np.count_nonzero(values):
            emptied.append(variable.path)
    short = []
    if total_zeros / total_size < TARGET_SPARSITY - 1.0 / total_size - 1e-9:
        short.append(f"all pruned weights together {total_zeros / total_size:.1%}")
    short += [f"{path} emptied" for path in emptied]
    kernels = kernel_variables(pruned)
    total = sum(int(np.prod(v.shape)) for v, _ in kernels.values())
    covered = sum(int(np.prod(v.shape)) for i, (v, _) in kernels.items() if i in pruned_weights)
    coverage = covered / total if total else 1.0
    metrics = {"pruned_weights": len(pruned_weights), "kernel_coverage": coverage}
    if short:
        return failed(
            f"pruned weights short of {TARGET_SPARSITY:.0%} sparsity after training: "
            f"{', '.join(short[:5])}",
            **metrics,
        )
    if coverage < MIN_KERNEL_COVERAGE:
        left = sorted(
            f"{variable.path} ({type(layer).__name__})"
            for i, (variable, layer) in kernels.items()
            if i not in pruned_weights
        )
        return failed(
            f"only {coverage:.0%} of kernel parameters pruned (need {MIN_KERNEL_COVERAGE:.0%}); "
            f"left dense: {', '.join(left[:8])}{' ...' if len(left) > 8 else ''}",
            **metrics,
        )
    result = passed(
        f"{len(pruned_weights)} weights at >= {TARGET_SPARSITY:.0%}, "
        f"{coverage:.0%} of kernel parameters",
        **metrics,
    )
    result.artifact = pruned
    return result


def strip(model, inputs):
    """`kp.strip` of the pruned model: same outputs, no keras_prune class left."""
    stripped = strip_model(model)
    expected, received = _predict(model, inputs), _predict(stripped, inputs)
    mismatch = _mismatch(expected, received, EXACT_TOLERANCE)
    if mismatch:
        return failed(f"outputs differ from the pruned model: {mismatch}")
    left = _library_classes(stripped)
    if left:
        return failed(f"keras_prune objects left: {', '.join(left[:5])}")
    difference, _ = _difference(expected, received)
    result = passed(f"max |diff| {difference:.2g}", max_difference=difference)
    result.artifact = stripped
    return result


def save_load(model, inputs, stripped=None):
    """`.keras` save and load of the pruned model (and of `stripped`): identical outputs."""
    notes = []
    with tempfile.TemporaryDirectory() as directory:
        for label, original in (("pruned", model), ("stripped", stripped)):
            if original is None:
                continue
            path = os.path.join(directory, f"{label}.keras")
            original.save(path)
            loaded = keras.models.load_model(path)
            expected, received = _predict(original, inputs), _predict(loaded, inputs)
            mismatch = _mismatch(expected, received, EXACT_TOLERANCE)
            if mismatch:
                return failed(f"{label}: reloaded outputs differ: {mismatch}")
            if label == "pruned" and wrapper_count(loaded) != wrapper_count(original):
                return failed(
                    f"pruned: {wrapper_count(original)} pruning wrappers saved, "
                    f"{wrapper_count(loaded)} reloaded"
                )
            notes.append(f"{label} {os.path.getsize(path) / 1e6:.2f} MB")
    return passed(", ".join(notes))


def _group_reasons(groups):
    counts = {}
    for _, reason in groups:
        counts[reason] = counts.get(reason, 0) + 1
    return "; ".join(f"{reason} (x{count})" for reason, count in counts.items())


def _graph_free(model):
    """Why `model` has no graph to read (a subclassed model: `kp.graph.analyze` raises
    `NotTraceable` naming the fix), or None."""
    try:
        kp.graph.trace(model)
    except kp.graph.NotTraceable as error:
        return f"{type(model).__name__} is subclassed: {str(error).splitlines()[0]}"
    return None


def shrink(model, inputs):
    """Channel pruning (`prune_once` at channel granularity, 50%) then `kp.shrink`: same
    outputs as the masked model, fewer MACs. Skipped when no channel group is removable, or
    when the model has no graph (subclassed: shrink reads channel groups from the graph)."""
    reason = _graph_free(model)
    if reason:
        return skipped(reason)
    groups, unsupported = channel_groups(model)
    if not any(prunable for prunable, _ in groups):
        reasons = [_group_reasons(groups)] if groups else ["no channel groups"]
        reasons += [f"{name}: {reason}" for name, reason in unsupported.items()]
        return skipped(f"no removable channel group: {'; '.join(reasons)}")
    masked = mask_channels(model)
    small = shrink_model(masked)
    expected, received = _predict(masked, inputs), _predict(small, inputs)
    difference, _ = _difference(expected, received)
    before, after = total_macs(model), total_macs(small)
    metrics = {"macs_before": before, "macs_after": after, "max_difference": difference}
    mismatch = _mismatch(expected, received, SHRINK_TOLERANCE)
    if mismatch:
        return failed(f"outputs differ from the masked model: {mismatch}", **metrics)
    if not after < before:
        return failed(f"MACs not reduced ({before:,} -> {after:,})", **metrics)
    metrics["macs_ratio"] = before / after if after else float("inf")
    return passed(
        f"MACs {before:,} -> {after:,} ({metrics['macs_ratio']:.2f}x), max |diff| {difference:.2g}",
        **metrics,
    )


def macs(model, inputs):
    """`kp.reporting.macs.count` is nonzero, and so is every layer that does multiply-accumulates.
    Skipped for models without a graph (MACs are counted from the graph's tensor shapes)."""
    reason = _graph_free(model)
    if reason:
        return skipped(reason)
    total = total_macs(model)
    by_name = {layer.name: layer for layer in sublayers(model)}
    zero, lookups = [], []
    for name, count in layer_macs(model):
        layer = by_name.get(name)
        if count or layer is None:
            continue
        inside = sublayers(layer)
        if any(isinstance(sub, MAC_LAYERS) for sub in inside):
            zero.append(f"{name} ({type(layer).__name__})")
        elif any(isinstance(sub, layers.Embedding) for sub in inside):
            lookups.append(name)
    metrics = {"macs": total, "zero_mac_layers": len(zero)}
    if zero:
        return failed(
            f"{len(zero)} layer(s) counted as 0 MACs: {', '.join(zero[:6])}"
            f"{' ...' if len(zero) > 6 else ''}",
            **metrics,
        )
    if not total:
        return failed("kp.reporting.macs.count returned 0 MACs", **metrics)
    note = f"; Embedding lookups (0 MACs by definition): {', '.join(lookups)}" if lookups else ""
    return passed(f"{total:,} MACs{note}", **metrics)


def _export_limits(model):
    """Why `to_tflite` cannot take `model`, or None. Nothing is out of its scope any more: it
    takes several inputs and outputs, fixes open dimensions from the verification data and
    exports subclassed models at their build shape."""
    return None


def export(model, inputs):
    """`kp.export.to_tflite(stripped, target="mobile")`, verified on LiteRT, in a child
    process so that a converter crash is reported instead of ending the run."""
    limit = _export_limits(model)
    if limit:
        return skipped(f"outside to_tflite's documented scope: {limit}")
    with tempfile.TemporaryDirectory() as directory:
        model_path = os.path.join(directory, "stripped.keras")
        inputs_path = os.path.join(directory, "inputs.npz")
        report_path = os.path.join(directory, "report.json")
        model.save(model_path)
        if isinstance(inputs, dict):  # keras-hub backbones take {"token_ids": ..., ...}
            np.savez(inputs_path, **{key: np.asarray(value) for key, value in inputs.items()})
        else:
            np.savez(inputs_path, *[np.asarray(array) for array in keras.tree.flatten(inputs)])
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        environment["KERAS_BACKEND"] = "tensorflow"
        command = [sys.executable, "-m", "tests.zoo.stages", "export"]
        command += [model_path, inputs_path, os.path.join(directory, "model.tflite"), report_path]
        return run_child(command, report_path, environment)


def run_child(command, report_path, environment=None):
    """Runs the export child `command`; its JSON report, or a fail naming how it died."""
    try:
        process = subprocess.run(
            command,
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=EXPORT_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return failed(f"converter timed out after {EXPORT_TIMEOUT_SECONDS} s")
    if process.returncode < 0:
        number = -process.returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        return failed(f"converter crashed (signal {number}, {name})\n\n{process.stderr[-4000:]}")
    if not os.path.exists(report_path):
        return failed(
            f"export process exited with code {process.returncode} without a report\n\n"
            f"{process.stderr[-4000:]}"
        )
    with open(report_path, encoding="utf-8") as file:
        report = json.load(file)
    return StageResult(report["status"], report["detail"], report.get("metrics", {}))


def _export_child(model_path, inputs_path, tflite_path, report_path):
    """Body of the export child process: writes a StageResult as JSON to `report_path`."""
    try:
        model = keras.models.load_model(model_path)
        with np.load(inputs_path) as stored:
            named = {key: stored[key] for key in stored.files}
        if all(key.startswith("arr_") for key in named):
            arrays = [named[f"arr_{index}"] for index in range(len(named))]
            inputs = arrays[0] if len(arrays) == 1 else arrays
        else:
            arrays, inputs = list(named.values()), named
        scale = max(float(np.max(np.abs(output))) for output in _values(model(inputs)))
        result = export_tflite(model, tflite_path, inputs)
        checks = export_checks(result)
        summary = ", ".join(
            f"{runtime} max |err| {error:.2g} (tolerance {tolerance:.2g})"
            for runtime, error, tolerance, _ in checks
        )
        metrics = {
            "file_bytes": result.file_bytes,
            "sparse_tensors": len(result.sparse_tensors),
            "max_error": max((error for _, error, _, _ in checks), default=0.0),
            "output_scale": scale,
        }
        if all(ok for *_, ok in checks):
            outcome = passed(
                f"{result.file_bytes:,} B, {len(result.sparse_tensors)} sparse tensor(s); "
                f"{summary}",
                **metrics,
            )
        else:
            # Is the model itself ill-conditioned? Move every input by one float32 step (the
            # rounding any runtime may add): if Keras's own outputs move as much as the file's
            # error, the file cannot be judged on these inputs.
            nudged = [
                np.nextafter(a, np.inf).astype(a.dtype) if a.dtype.kind == "f" else a
                for a in arrays
            ]
            if isinstance(inputs, dict):
                nudged = dict(zip(inputs, nudged, strict=True))
            elif len(nudged) == 1:
                nudged = nudged[0]
            own, _ = _difference(model(inputs, training=False), model(nudged, training=False))
            metrics["keras_self_difference"] = own
            if metrics["max_error"] <= 2 * own:
                outcome = skipped(
                    f"ill-conditioned model: Keras itself moves by {own:.2g} when each input "
                    f"moves by one float32 step (outputs up to {scale:.3g}), as much as the file "
                    f"({summary})",
                    **metrics,
                )
            else:
                outcome = failed(
                    f"LiteRT disagrees with Keras: {summary}; Keras outputs up to {scale:.3g}, "
                    f"Keras itself moves by {own:.2g} when each input moves by one float32 step",
                    **metrics,
                )
    except Exception as error:  # noqa: BLE001  (every failure is a reported result)
        outcome = from_exception(error)
    with open(report_path, "w", encoding="utf-8") as file:
        json.dump(
            {"status": outcome.status, "detail": outcome.detail, "metrics": outcome.metrics}, file
        )


FUNCTIONS = {
    "prune": prune,
    "strip": strip,
    "save_load": save_load,
    "shrink": shrink,
    "macs": macs,
    "export": export,
}


def run_stage(function, *args, **kwargs):
    """Calls a stage, turning any exception into a "fail" and timing it."""
    start = time.perf_counter()
    try:
        result = function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001  (every failure is a reported result)
        result = from_exception(error)
    result.metrics["seconds"] = time.perf_counter() - start
    return result


class ZooRun:
    """One zoo model and its stage results, computed on demand, each at most once.

    Example:

    ```python
    run = ZooRun("residual_cnn")
    print(run.result("export").status)   # runs prune and strip first
    ```
    """

    def __init__(self, name, builder=None):
        self.name = name
        self.builder = builder or zoo_models.BUILDERS[name]
        self.description = ""
        self._built = None
        self._results = {}

    def _build(self):
        if self._built is None:
            start = time.perf_counter()
            try:
                model, inputs, self.description = self.builder()
                self._built = (model, inputs, None)
            except Exception as error:  # noqa: BLE001
                self._built = (None, None, from_exception(error))
            self.build_seconds = time.perf_counter() - start
        return self._built

    def result(self, stage):
        if stage not in FUNCTIONS:
            raise ValueError(f"Expected a stage in {STAGES}. Received: stage={stage!r}")
        if stage in self._results:
            return self._results[stage]
        model, inputs, build_error = self._build()
        if build_error is not None:
            result = StageResult("fail", f"model build failed: {build_error.detail}")
        else:
            result = None
            for prerequisite in PREREQUISITES[stage]:
                upstream = self.result(prerequisite)
                if upstream.status == "fail":
                    result = skipped(f"{prerequisite} failed", blocked_by=prerequisite)
                elif upstream.status == "skip":
                    # Name the stage that really failed, not the one skipped because of it.
                    root = upstream.metrics.get("blocked_by")
                    result = (
                        skipped(f"{root} failed", blocked_by=root)
                        if root
                        else skipped(f"{prerequisite} skipped: {upstream.reason}")
                    )
                if result is not None:
                    break
            if result is None:
                if stage == "strip":
                    result = run_stage(strip, self.result("prune").artifact, inputs)
                elif stage == "save_load":
                    result = run_stage(
                        save_load,
                        self.result("prune").artifact,
                        inputs,
                        stripped=self.result("strip").artifact,
                    )
                elif stage == "export":
                    result = run_stage(export, self.result("strip").artifact, inputs)
                else:
                    result = run_stage(FUNCTIONS[stage], model, inputs)
        self._results[stage] = result
        return result

    def results(self, stages=STAGES):
        return {stage: self.result(stage) for stage in stages}

    def release(self):
        """Drops the models so the next zoo model has the memory."""
        self._built = None
        for result in self._results.values():
            result.artifact = None
        keras.backend.clear_session()
        gc.collect()


def _main(argv=None):
    parser = argparse.ArgumentParser(description="Zoo stage worker (the export child process).")
    commands = parser.add_subparsers(dest="command", required=True)
    child = commands.add_parser("export", help="export a saved .keras model; write a JSON report")
    for argument in ("model_path", "inputs_path", "tflite_path", "report_path"):
        child.add_argument(argument)
    arguments = parser.parse_args(argv)
    _export_child(
        arguments.model_path, arguments.inputs_path, arguments.tflite_path, arguments.report_path
    )


if __name__ == "__main__":
    _main()
