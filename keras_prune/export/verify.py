"""Runs exported files on the real runtimes: LiteRT (with and without XNNPACK) and TFLM.

Every number `to_tflite` reports comes from here: outputs compared with Keras, latency medians,
and the smallest TFLM arena that runs the model. Both runtimes can end a process with a
segmentation fault on a corrupted file (or, for TFLM, a too-small arena), so they run in child
processes (`isolation.py`); a crash becomes a `RuntimeCheckError` naming the stage.

Why one long module: the output checks, latency timing and arena search all build the same
child-process job (inputs quantized to the file's input tensors, outputs read back and
dequantized) and share its tolerance rules; split, each would repeat that job format, which
must stay identical to what `_worker.py` reads.
"""

import dataclasses
import json
import os
import re

import numpy as np

from keras_prune.export import isolation
from keras_prune.export.errors import RuntimeCheckError
from keras_prune.export.files import temporary_directory
from keras_prune.export.flatbuffer import load_bytes, read_model

_ARENA_ALIGNMENT = 16
_MAX_ARENA = 256 * 1024 * 1024


@dataclasses.dataclass
class RuntimeCheck:
    """Exported model compared with Keras on the same inputs.

    Args:
        runtime: What ran the file, e.g. `"litert+xnnpack"` or `"tflm"`.
        samples: Number of inputs compared.
        max_abs_error: Largest absolute difference from the Keras outputs (after dequantizing);
            for several outputs, that of the output closest to its tolerance.
        tolerance: Largest difference accepted (for that output).
        passed: Every output within its tolerance.
        top1_agreement: Fraction of samples whose arg-max class equals Keras's (single
            classifier outputs only, else None).
        outputs: For models with several outputs: output name -> `{"max_abs_error",
            "tolerance", "passed"}`; else None.
    """

    runtime: str
    samples: int
    max_abs_error: float
    tolerance: float
    passed: bool
    top1_agreement: float | None = None
    outputs: dict | None = None

    def to_dict(self):
        return dataclasses.asdict(self)


def float_tolerance(keras_outputs=None):
    """Largest absolute error accepted for float32 files.

    1e-4, or 0.1% of the largest Keras output when that is above 0.1. A float32 file computes
    the same sums in another order (fused kernels, XNNPACK's tiling), so its error grows with
    the size of the activations: an untrained MobileNetV3Small whose logits reach 3.8e3 differs
    by about 1 on LiteRT (measured by the model zoo). A broken conversion (lost zeros, swapped
    layout) moves outputs by a large part of their size, far above either bound.
    """
    if keras_outputs is None:
        return 1e-4
    values = np.asarray(keras_outputs, dtype=np.float32)
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    return max(1e-4, 1e-3 * peak)


def int8_tolerance(keras_outputs, output_scale):
    """Largest absolute error accepted for full-integer files.

    Rounding to int8 at every layer moves each output by a few quantization steps; a broken
    conversion (wrong scale, lost zeros, swapped layout) moves it by a large part of its range.
    The bound is the larger of 10% of the Keras outputs' range and four output steps.
    """
    spread = float(np.max(keras_outputs) - np.min(keras_outputs))
    return max(0.1 * spread, 4.0 * float(output_scale))


def _is_quantized(tensor):
    return tensor.quantization is not None and not tensor.dtype.startswith("float")


def quantize(values, tensor):
    """Values to the dtype of input `tensor` (a `TensorInfo`): float inputs of int8 files are
    quantized with its scale; other inputs are cast (token ids stay integers)."""
    if tensor.dtype.startswith("float"):
        return np.asarray(values, dtype=np.float32)
    if not _is_quantized(tensor) or np.asarray(values).dtype.kind != "f":
        return np.asarray(values).astype(tensor.dtype)
    scale = tensor.quantization["scale"][0]
    zero_point = tensor.quantization["zero_point"][0]
    info = np.iinfo(tensor.dtype)
    quantized = np.round(np.asarray(values, dtype=np.float64) / scale + zero_point)
    return np.clip(quantized, info.min, info.max).astype(tensor.dtype)


def dequantize(values, tensor):
    """Raw output values of `tensor` (a `TensorInfo`) back to float32."""
    if not _is_quantized(tensor):
        return np.asarray(values, dtype=np.float32)
    scale = tensor.quantization["scale"][0]
    zero_point = tensor.quantization["zero_point"][0]
    return ((np.asarray(values, dtype=np.float32) - zero_point) * scale).astype(np.float32)


def file_inputs(info, x, argument="x"):
    """User inputs for a `.tflite` file -> `{tensor index: array}`, in the tensors' dtypes.

    Args:
        info: The file's `ModelInfo`.
        x: One array (single-input files), a dict keyed by input name (`info.input_names()`,
            the Keras input names for files from `to_tflite`) or a list in that order.
        argument: Name used in error messages.
    """
    names = info.input_names()
    if isinstance(x, dict):
        missing = [name for name in names if name not in x]
        if missing:
            raise ValueError(
                f"Expected `{argument}` to have an entry for every input of the file: {names}. "
                f"Missing: {missing}"
            )
        arrays = [x[name] for name in names]
    elif isinstance(x, list | tuple):
        if len(x) != len(names):
            raise ValueError(
                f"Expected `{argument}` as {len(names)} arrays, one per input {names}. "
                f"Received {len(x)}."
            )
        arrays = list(x)
    elif len(names) == 1:
        arrays = [x]
    else:
        raise ValueError(
            f"Expected `{argument}` as a dict keyed by input name: the file has inputs {names}."
        )
    inputs = {}
    for name, index, array in zip(names, info.inputs, arrays, strict=True):
        tensor = info.tensors[index]
        array = np.asarray(array)
        if array.shape[1:] != tensor.shape[1:] or not len(array):
            raise ValueError(
                f"Expected `{argument}` for input {name!r} of shape (num_samples, "
                f"{', '.join(map(str, tensor.shape[1:]))}). Received: shape={array.shape}"
            )
        inputs[index] = quantize(array, tensor)
    if len({len(array) for array in inputs.values()}) > 1:
        raise ValueError(f"Expected the same number of samples for every input in `{argument}`.")
    return inputs


class XnnpackRefusedError(RuntimeCheckError):
    """XNNPACK refused to delegate the file (e.g. int8 FULLY_CONNECTED with unstructured
    sparsity); LiteRT's built-in kernels may still run it."""


def _runtime_failure(stage, returncode, error, log):
    what = {
        "verify-litert": "running the file on LiteRT",
        "latency": "timing the file on LiteRT",
        "verify-tflm": "running the file on TensorFlow Lite Micro",
    }[stage.split(":")[0]]
    delegate = {"xnnpack": " with XNNPACK", "builtin": " with the built-in kernels"}.get(
        stage.partition(":")[2], ""
    )
    if returncode < 0:
        return RuntimeCheckError(
            f"The interpreter crashed ({isolation.describe_exit(returncode)}) while {what}"
            f"{delegate} (stage {stage.split(':')[0]}). The file is corrupted, or uses an op or "
            "encoding this runtime cannot execute; your process was not affected.",
            stage=stage.split(":")[0],
            signal=-returncode,
        )
    lines = [line for line in (error or log).strip().splitlines() if line.strip()]
    detail = " ".join(lines[-3:]) if lines else isolation.describe_exit(returncode)
    refused = stage.endswith(":xnnpack") and "XNNPack" in detail
    return (XnnpackRefusedError if refused else RuntimeCheckError)(
        f"The runtime refused the file while {what}{delegate} "
        f"(stage {stage.split(':')[0]}): {detail}",
        stage=stage.split(":")[0],
    )


def run_litert(model, inputs, steps):
    """Runs `steps` on LiteRT in one child process.

    Args:
        model: The `.tflite` bytes.
        inputs: `{tensor index: array}` in the tensors' dtypes (`file_inputs`); latency steps
            time the first sample.
        steps: Dicts: `{"kind": "predict", "xnnpack": bool}` or
            `{"kind": "latency", "xnnpack": bool, "runs": int, "warmup": int}`.

    Returns:
        `(outputs, latency)`: one `{tensor index: raw array}` per predict step, in order, and
        `{"xnnpack" | "builtin": median microseconds}` for the latency steps.
    """
    with temporary_directory() as job:
        plan = []
        for number, step in enumerate(steps):
            delegate = "xnnpack" if step["xnnpack"] else "builtin"
            stage = ("verify-litert" if step["kind"] == "predict" else "latency") + ":" + delegate
            plan.append({**step, "stage": stage, "name": delegate, "output": f"out{number}.npz"})
        with open(os.path.join(job, "job.json"), "w", encoding="utf-8") as handle:
            json.dump({"steps": plan}, handle)
        with open(os.path.join(job, "model.tflite"), "wb") as handle:
            handle.write(model)
        np.savez(os.path.join(job, "inputs.npz"), **{f"t{k}": v for k, v in inputs.items()})
        run = isolation.run_worker("litert", job)
        if run.returncode != 0:
            stage, error = plan[0]["stage"], None
            if os.path.exists(os.path.join(job, "stage")):
                with open(os.path.join(job, "stage"), encoding="utf-8") as handle:
                    stage = handle.read().strip() or stage
            if os.path.exists(os.path.join(job, "error.json")):
                with open(os.path.join(job, "error.json"), encoding="utf-8") as handle:
                    error = json.load(handle)["message"]
            raise _runtime_failure(stage, run.returncode, error, run.stderr)
        outputs = []
        for step in plan:
            if step["kind"] == "predict":
                with np.load(os.path.join(job, step["output"])) as stored:
                    outputs.append({int(key[1:]): stored[key] for key in stored.files})
        with open(os.path.join(job, "latency.json"), encoding="utf-8") as handle:
            latency = json.load(handle)
    return outputs, latency


def _file_outputs(info, raw):
    """Raw outputs `{tensor index: array}` -> dequantized `{output name: array}`."""
    return {
        name: dequantize(raw[index], info.tensors[index])
        for name, index in zip(info.output_names(), info.outputs, strict=True)
    }


def predict(model, x, *, runtime="litert", xnnpack=True, arena_bytes=None):
    """Runs a `.tflite` file on a batch of inputs, in a child process, and returns its outputs.

    Float inputs are quantized and outputs dequantized with the file's own scales, so int8
    files are called like float ones; integer inputs (token ids) are passed as they are. One
    sample is run at a time (exported files have batch size 1).

    Args:
        model: Path or bytes of a `.tflite` file.
        x: Array of shape `(num_samples, *input_shape)`, or for several inputs a dict keyed by
            input name (`read_model(model).input_names()`: the Keras names for files from
            `to_tflite`) or a list in that order.
        runtime: `"litert"` (ai-edge-litert) or `"tflm"` (TensorFlow Lite Micro).
        xnnpack: For `"litert"`: use the XNNPACK delegate or the built-in kernels only.
        arena_bytes: For `"tflm"`: arena size; default: the smallest that works.

    Returns:
        A float array for single-output files, else a dict keyed by output name.

    Raises:
        RuntimeCheckError: the runtime refused the file or crashed on it.

    Example:

    ```python
    # docs: slow
    kp.export.to_tflite(pruned, "model.tflite")
    probabilities = kp.export.predict("model.tflite", x[:10])
    ```
    """
    if runtime not in ("litert", "tflm"):
        raise ValueError(f'Expected `runtime` "litert" or "tflm". Received: runtime={runtime!r}')
    data = load_bytes(model)
    info = read_model(data)
    inputs = file_inputs(info, x)
    if runtime == "litert":
        (raw,), _ = run_litert(data, inputs, [{"kind": "predict", "xnnpack": xnnpack}])
    else:
        if arena_bytes is None:
            arena_bytes = find_min_arena(data)
        ordered = [inputs[index] for index in info.inputs]
        raw = dict(zip(info.outputs, tflm_outputs(data, ordered, arena_bytes), strict=True))
    outputs = _file_outputs(info, raw)
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def generated_inputs(info, count=1, seed=0):
    """Inputs for a file known only by its tensors: normal floats, int8 values spread over
    their range for quantized inputs, zeros for other integer inputs (token ids and masks are
    then valid whatever the vocabulary), False for booleans."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for index in info.inputs:
        tensor = info.tensors[index]
        shape = (count, *tensor.shape[1:])
        if tensor.dtype.startswith("float"):
            inputs[index] = rng.standard_normal(shape).astype(tensor.dtype)
        elif _is_quantized(tensor):
            limits = np.iinfo(tensor.dtype)
            inputs[index] = rng.integers(limits.min, limits.max, shape, endpoint=True).astype(
                tensor.dtype
            )
        elif tensor.dtype in ("bool", "int8", "uint8", "int16", "uint16", "int32", "int64"):
            inputs[index] = np.zeros(shape, dtype=tensor.dtype)
        else:
            raise ValueError(
                f"Cannot generate data for input {tensor.name!r} of type {tensor.dtype}."
            )
    return inputs


def measure_latency(model, *, xnnpack=True, runs=50, warmup=5, x=None, threads=1):
    """Median wall time of one `invoke()` in microseconds, on LiteRT, measured in a child
    process.

    Args:
        model: Path or bytes of a `.tflite` file.
        xnnpack: With the XNNPACK delegate (True) or built-in kernels only (False).
        runs: Timed invocations; the median is returned.
        warmup: Untimed invocations first (XNNPACK packs weights on the first run).
        x: One sample to time (as for `predict`, batch of 1); default: generated
            (`generated_inputs`).
        threads: The interpreter's thread count (default 1).

    Example:

    ```python
    # docs: slow
    kp.export.to_tflite(pruned, "model.tflite")
    kp.export.measure_latency("model.tflite", xnnpack=False)
    ```
    """
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"Expected `runs` >= 1. Received: runs={runs}")
    data = load_bytes(model)
    info = read_model(data)
    inputs = generated_inputs(info) if x is None else file_inputs(info, x)
    step = {"kind": "latency", "xnnpack": xnnpack, "runs": runs, "warmup": warmup}
    _, latency = run_litert(data, inputs, [{**step, "threads": _threads(threads)}])
    return latency["xnnpack" if xnnpack else "builtin"]


def _threads(threads):
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"Expected `threads` to be an integer >= 1. Received: threads={threads!r}")
    return threads


def measure_latencies(
    models, *, xnnpack=True, runs=50, warmup=5, threads=1, rounds=1, clock="wall"
):
    """Median `invoke()` time in microseconds of each of several `.tflite` files, timed one
    after the other in one child process (a latency table of many small models costs one
    process start, not one per model).

    Args:
        models: A list of paths or bytes of `.tflite` files (generated inputs are used).
        xnnpack: With the XNNPACK delegate (True) or built-in kernels only (False).
        runs: Timed invocations per model and round.
        warmup: Untimed invocations first.
        threads: The interpreter's thread count.
        rounds: Times the whole list is timed, interleaved (model 1, 2, ..., 1, 2, ...): the
            median over every round's timings is returned, so a burst of load on a shared
            machine does not fall on one model only.
        clock: "wall" (elapsed time) or "thread" (CPU time of the invoking thread: on a
            machine busy with other processes, preemption inflates the wall time of long
            invocations far more than of short ones; `threads=1` only).

    Returns:
        A list of medians in microseconds, one per model.

    Example:

    ```python
    # docs: slow
    kp.export.to_tflite(kp.shrink(kp.strip(pruned)), "small.tflite")
    kp.export.to_tflite(model, "large.tflite")
    small, large = kp.export.measure_latencies(["small.tflite", "large.tflite"], threads=2)
    ```
    """
    rounds_measured = latency_rounds(
        models,
        xnnpack=xnnpack,
        runs=runs,
        warmup=warmup,
        threads=threads,
        rounds=rounds,
        clock=clock,
    )
    return [float(np.median(medians)) for medians in rounds_measured]


def latency_rounds(models, *, xnnpack=True, runs=50, warmup=5, threads=1, rounds=1, clock="wall"):
    """`measure_latencies`, keeping every round: one list per model of its per-round medians
    (microseconds), the rounds interleaved (model 1, 2, ..., 1, 2, ...) in one child process.
    The arguments are those of `measure_latencies`; the spread of the rounds shows how much
    the machine's load moved the figures.

    Raises:
        XnnpackRefusedError: `xnnpack=True` and XNNPACK refused one of the files.
        RuntimeCheckError: LiteRT refused a file or crashed on it.

    Example:

    ```python
    # docs: slow
    sparse, dense = latency_rounds(["sparse.tflite", "dense.tflite"], rounds=7)
    ```
    """
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"Expected `runs` >= 1. Received: runs={runs}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"Expected `rounds` >= 1. Received: rounds={rounds}")
    threads = _threads(threads)
    if clock not in ("wall", "thread") or (clock == "thread" and threads != 1):
        raise ValueError(
            'Expected `clock` "wall", or "thread" with threads=1 (the CPU time of one thread). '
            f"Received: clock={clock!r}, threads={threads}"
        )
    delegate = "xnnpack" if xnnpack else "builtin"
    with temporary_directory() as job:
        plan = []
        for number, model in enumerate(models):
            data = load_bytes(model)
            with open(os.path.join(job, f"m{number}.tflite"), "wb") as handle:
                handle.write(data)
            inputs = generated_inputs(read_model(data))
            np.savez(os.path.join(job, f"x{number}.npz"), **{f"t{k}": v for k, v in inputs.items()})
        for round_number in range(rounds):
            for number in range(len(models)):
                plan.append(
                    {
                        "kind": "latency",
                        "xnnpack": xnnpack,
                        "runs": runs,
                        "warmup": warmup,
                        "threads": threads,
                        "clock": clock,
                        "stage": f"latency:{delegate}",
                        "name": f"m{number}r{round_number}",
                        "model": f"m{number}.tflite",
                        "inputs": f"x{number}.npz",
                    }
                )
        with open(os.path.join(job, "job.json"), "w", encoding="utf-8") as handle:
            json.dump({"steps": plan}, handle)
        run = isolation.run_worker("litert", job)
        if run.returncode != 0:
            error = None
            if os.path.exists(os.path.join(job, "error.json")):
                with open(os.path.join(job, "error.json"), encoding="utf-8") as handle:
                    error = json.load(handle)["message"]
            raise _runtime_failure(f"latency:{delegate}", run.returncode, error, run.stderr)
        with open(os.path.join(job, "latency.json"), encoding="utf-8") as handle:
            latency = json.load(handle)
    return [
        [float(latency[f"m{number}r{r}"]) for r in range(rounds)] for number in range(len(models))
    ]


class TFLMError(RuntimeCheckError):
    """TensorFlow Lite Micro could not load or run the model."""

    def __init__(self, message, signal=None):
        super().__init__(message, stage="verify-tflm", signal=signal)


def _tflm_error(summary, run):
    signal = -run.returncode if run.returncode < 0 else None
    cause = (
        " The likely cause is an op or encoding TFLM's reference kernels cannot execute (such "
        "as block-sparse FULLY_CONNECTED); your process was not affected."
        if signal and not missing_op_from_log(run.stderr)
        else ""
    )
    return TFLMError(f"{summary} (stage verify-tflm). {_explain(run)}{cause}", signal)


def _arena_used(log):
    used = re.search(r"Arena allocation total (\d+) bytes", log)
    return int(used.group(1)) if used else None


def missing_op_from_log(log):
    """Op names TFLM reported it has no kernel for, from its error log."""
    return sorted(set(re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", log)))


def _explain(run):
    missing = missing_op_from_log(run.stderr)
    if missing:
        return f"TFLM has no kernel for: {', '.join(missing)}."
    if run.returncode < 0:
        return f"The TFLM interpreter crashed ({isolation.describe_exit(run.returncode)})."
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    return " ".join(lines[-3:]) if lines else "TFLM failed without a message."


def _align(size):
    return -(-size // _ARENA_ALIGNMENT) * _ARENA_ALIGNMENT


def _zero_inputs(info, path):
    np.savez(
        path,
        **{
            f"i{position}": np.zeros(
                (1, *info.tensors[index].shape[1:]), dtype=info.tensors[index].dtype
            )
            for position, index in enumerate(info.inputs)
        },
    )


def _progress_bar(verbose):
    """A Progbar counting TFLM tries, or None when silent (this module loads without Keras)."""
    if not verbose:
        return None
    import keras

    return keras.utils.Progbar(None, verbose=verbose, unit_name="try")


def find_min_arena(model, verbose=0):
    """Smallest TFLM arena (bytes, a multiple of 16) that loads and runs `model` once.

    A generous arena is tried first; TFLM's recording allocator reports what it used, and a
    bisection over arena sizes (each try in its own process, since too small an arena crashes
    TFLM) confirms the smallest one that works.

    Args:
        model: Path or bytes of an int8 `.tflite` file without sparse encoding.
        verbose: 1 counts the tries (one TFLM process each) on a progress bar.

    Example:

    ```python
    # docs: slow
    kp.export.to_tflite(pruned, "model.tflite", target="mcu", calibration_data=x[:32])
    arena = kp.export.find_min_arena("model.tflite")  # e.g. 2976
    ```
    """
    data = load_bytes(model)
    info = read_model(data)
    with temporary_directory() as workdir:
        path = os.path.join(workdir, "model.tflite")
        inputs = os.path.join(workdir, "zeros.npz")
        with open(path, "wb") as handle:
            handle.write(data)
        _zero_inputs(info, inputs)

        progress = _progress_bar(verbose)
        tries = []

        def works(arena):
            tries.append(arena)
            if progress is not None:
                progress.update(len(tries))
            return isolation.run_worker("tflm", path, str(int(arena)), inputs)

        high = _align(len(data) * 2 + 64 * 1024)
        first = works(high)
        while first.returncode < 0 and high < _MAX_ARENA:
            high *= 4
            first = works(high)
        if first.returncode != 0:
            raise _tflm_error("TFLM cannot run this model", first)
        low = 0
        used = _arena_used(first.stderr)
        # The recorded total is almost always the answer: try it and one step below it first.
        for candidate in (used, (used or 0) - _ARENA_ALIGNMENT):
            if candidate is not None and low < candidate < high:
                if works(candidate).returncode == 0:
                    high = candidate
                else:
                    low = candidate
        while high - low > _ARENA_ALIGNMENT:
            middle = _align((low + high) // 2)
            if middle >= high:
                break
            if works(middle).returncode == 0:
                high = middle
            else:
                low = middle
        if progress is not None:
            progress.update(len(tries), finalize=True)
        return high


def tflm_outputs(model, inputs, arena_bytes):
    """Raw TFLM outputs, a list in the file's output order, for `inputs` (a list of arrays in
    the file's input order and the tensors' dtypes), run in a child process."""
    data = load_bytes(model)
    info = read_model(data)
    if len(inputs) != len(info.inputs):
        raise ValueError(
            f"Expected {len(info.inputs)} input arrays for this file. Received {len(inputs)}."
        )
    with temporary_directory() as workdir:
        paths = [os.path.join(workdir, name) for name in ("m.tflite", "x.npz", "y.npz")]
        with open(paths[0], "wb") as handle:
            handle.write(data)
        np.savez(paths[1], **{f"i{i}": np.asarray(a) for i, a in enumerate(inputs)})
        run = isolation.run_worker(
            "tflm", paths[0], str(int(arena_bytes)), paths[1], paths[2], str(len(info.outputs))
        )
        if run.returncode != 0:
            raise _tflm_error("TFLM failed to run the model", run)
        with np.load(paths[2]) as stored:
            return [stored[f"o{i}"] for i in range(len(info.outputs))]


def run_tflm(model, inputs, arena_bytes):
    """Raw TFLM outputs for `inputs`, one row per sample, run in a child process.

    Args:
        model: Path or bytes of the `.tflite` file.
        inputs: Array `(num_samples, *input_shape)` in the input tensor's dtype, or for several
            inputs a list of such arrays in the file's input order (`ModelInfo.inputs`).
        arena_bytes: Arena size given to TFLM.

    Returns:
        An array for single-output files, else a list in the file's output order.
    """
    single = not isinstance(inputs, list | tuple)
    outputs = tflm_outputs(model, [inputs] if single else list(inputs), arena_bytes)
    return outputs[0] if len(outputs) == 1 else outputs


def compare(keras_outputs, runtime_outputs, *, runtime, quantized, output_scale=None):
    """A `RuntimeCheck` of `runtime_outputs` against `keras_outputs` (same shapes, float).

    Args:
        keras_outputs: Keras model outputs, `(num_samples, ...)`; for several outputs a dict
            `{name: array}`.
        runtime_outputs: Dequantized outputs of the exported file for the same inputs (a dict
            with the same names for several outputs).
        runtime: Label for the report.
        quantized: Whether the file is full-integer (changes the tolerance).
        output_scale: Quantization step of the output tensor (int8 files); a dict by name for
            several outputs.
    """
    if not isinstance(keras_outputs, dict):
        keras_outputs, runtime_outputs = {"output": keras_outputs}, {"output": runtime_outputs}
        output_scale = {"output": output_scale}
    details, worst = {}, None
    for name, expected in keras_outputs.items():
        expected = np.asarray(expected, dtype=np.float32)
        actual = np.asarray(runtime_outputs[name], dtype=np.float32).reshape(expected.shape)
        error = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
        if quantized:
            tolerance = int8_tolerance(expected, (output_scale or {}).get(name) or 0.0)
        else:
            tolerance = float_tolerance(expected)
        details[name] = {
            "max_abs_error": error,
            "tolerance": float(tolerance),
            "passed": bool(error <= tolerance),
        }
        ratio = error / tolerance if tolerance else (0.0 if error == 0 else float("inf"))
        if worst is None or ratio > worst[0]:
            worst = (ratio, name)
    top1 = None
    if len(keras_outputs) == 1:
        expected = np.asarray(next(iter(keras_outputs.values())))
        actual = np.asarray(next(iter(runtime_outputs.values()))).reshape(expected.shape)
        if expected.ndim == 2 and expected.shape[1] > 1:
            top1 = float(np.mean(np.argmax(expected, axis=1) == np.argmax(actual, axis=1)))
    chosen = details[worst[1]]
    return RuntimeCheck(
        runtime=runtime,
        samples=int(len(next(iter(keras_outputs.values())))),
        max_abs_error=chosen["max_abs_error"],
        tolerance=chosen["tolerance"],
        passed=all(detail["passed"] for detail in details.values()),
        top1_agreement=top1,
        outputs=details if len(details) > 1 else None,
    )
