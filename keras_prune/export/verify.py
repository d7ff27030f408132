"""Runs exported files on the real runtimes: LiteRT (with and without XNNPACK) and TFLM.

Every number `to_tflite` reports comes from here: outputs compared with Keras, latency medians,
and the smallest TFLM arena that runs the model.
"""

import dataclasses
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from keras_prune.export.flatbuffer import load_bytes, read_model

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tflm_worker.py")
_ARENA_ALIGNMENT = 16
_MAX_ARENA = 256 * 1024 * 1024


@dataclasses.dataclass
class RuntimeCheck:
    """Exported model compared with Keras on the same inputs.

    Args:
        runtime: What ran the file, e.g. `"litert+xnnpack"` or `"tflm"`.
        samples: Number of inputs compared.
        max_abs_error: Largest absolute difference from the Keras outputs (after dequantizing).
        tolerance: Largest difference accepted.
        passed: `max_abs_error <= tolerance`.
        top1_agreement: Fraction of samples whose arg-max class equals Keras's (classifier
            outputs only, else None).
    """

    runtime: str
    samples: int
    max_abs_error: float
    tolerance: float
    passed: bool
    top1_agreement: float | None = None

    def to_dict(self):
        return dataclasses.asdict(self)


def float_tolerance():
    """Largest absolute error accepted for float32 files: they must match Keras to 1e-4."""
    return 1e-4


def int8_tolerance(keras_outputs, output_scale):
    """Largest absolute error accepted for full-integer files.

    Rounding to int8 at every layer moves each output by a few quantization steps; a broken
    conversion (wrong scale, lost zeros, swapped layout) moves it by a large part of its range.
    The bound is the larger of 10% of the Keras outputs' range and four output steps.
    """
    spread = float(np.max(keras_outputs) - np.min(keras_outputs))
    return max(0.1 * spread, 4.0 * float(output_scale))


def quantize(values, tensor):
    """Float values to the dtype of input `tensor` (a `TensorInfo`), using its scale."""
    if tensor.quantization is None or tensor.dtype.startswith("float"):
        return np.asarray(values, dtype=np.float32)
    scale = tensor.quantization["scale"][0]
    zero_point = tensor.quantization["zero_point"][0]
    info = np.iinfo(tensor.dtype)
    quantized = np.round(np.asarray(values, dtype=np.float64) / scale + zero_point)
    return np.clip(quantized, info.min, info.max).astype(tensor.dtype)


def dequantize(values, tensor):
    """Raw output values of `tensor` (a `TensorInfo`) back to float32."""
    if tensor.quantization is None or tensor.dtype.startswith("float"):
        return np.asarray(values, dtype=np.float32)
    scale = tensor.quantization["scale"][0]
    zero_point = tensor.quantization["zero_point"][0]
    return ((np.asarray(values, dtype=np.float32) - zero_point) * scale).astype(np.float32)


def litert_interpreter(model, *, xnnpack=True):
    """An allocated `ai_edge_litert` interpreter, with XNNPACK (AUTO) or built-in kernels only.

    Args:
        model: Path or bytes of a `.tflite` file.
        xnnpack: True applies the default XNNPACK delegate (`OpResolverType.AUTO`); False runs
            the built-in kernels (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(
        model_content=load_bytes(model),
        experimental_op_resolver_type=resolver,
        num_threads=1,
    )
    interpreter.allocate_tensors()
    return interpreter


def _single_io(info):
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ValueError(
            "Expected a model with one input and one output. Received: "
            f"{len(info.inputs)} inputs and {len(info.outputs)} outputs."
        )
    return info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]


def predict(model, x, *, runtime="litert", xnnpack=True, arena_bytes=None):
    """Runs a `.tflite` file on a batch of float inputs and returns float outputs.

    Inputs are quantized and outputs dequantized with the file's own scales, so int8 files are
    called like float ones. One sample is run at a time (exported files have batch size 1).

    Args:
        model: Path or bytes of a `.tflite` file with one input and one output.
        x: Float array of shape `(num_samples, *input_shape)`.
        runtime: `"litert"` (ai-edge-litert) or `"tflm"` (TensorFlow Lite Micro).
        xnnpack: For `"litert"`: use the XNNPACK delegate or the built-in kernels only.
        arena_bytes: For `"tflm"`: arena size; default: the smallest that works.

    Example:

    ```python
    probabilities = predict("model.tflite", x_test[:10])
    ```
    """
    data = load_bytes(model)
    info = read_model(data)
    input_tensor, output_tensor = _single_io(info)
    x = np.asarray(x)
    if x.shape[1:] != input_tensor.shape[1:]:
        raise ValueError(
            f"Expected inputs of shape (num_samples, {', '.join(map(str, input_tensor.shape[1:]))})"
            f". Received: x.shape={x.shape}"
        )
    inputs = quantize(x, input_tensor)
    if runtime == "litert":
        interpreter = litert_interpreter(data, xnnpack=xnnpack)
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]
        raw = []
        for sample in inputs:
            interpreter.set_tensor(input_index, sample[None])
            interpreter.invoke()
            raw.append(interpreter.get_tensor(output_index)[0].copy())
        raw = np.stack(raw)
    elif runtime == "tflm":
        if arena_bytes is None:
            arena_bytes = find_min_arena(data)
        raw = run_tflm(data, inputs, arena_bytes)
    else:
        raise ValueError(f'Expected `runtime` "litert" or "tflm". Received: runtime={runtime!r}')
    return dequantize(raw, output_tensor)


def measure_latency(model, *, xnnpack=True, runs=50, warmup=5):
    """Median wall time of one `invoke()` in microseconds, on LiteRT, single thread.

    Args:
        model: Path or bytes of a `.tflite` file.
        xnnpack: With the XNNPACK delegate (True) or built-in kernels only (False).
        runs: Timed invocations; the median is returned.
        warmup: Untimed invocations first (XNNPACK packs weights on the first run).

    Example:

    ```python
    measure_latency("model.tflite", xnnpack=False)
    ```
    """
    if runs < 1:
        raise ValueError(f"Expected `runs` >= 1. Received: runs={runs}")
    interpreter = litert_interpreter(model, xnnpack=xnnpack)
    for detail in interpreter.get_input_details():
        sample = np.random.default_rng(0).normal(size=detail["shape"])
        if np.issubdtype(detail["dtype"], np.integer):
            info = np.iinfo(detail["dtype"])
            sample = np.clip(sample * 20, info.min, info.max)
        interpreter.set_tensor(detail["index"], sample.astype(detail["dtype"]))
    for _ in range(warmup):
        interpreter.invoke()
    timings = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        interpreter.invoke()
        timings.append(time.perf_counter_ns() - start)
    return statistics.median(timings) / 1000.0


class TFLMError(RuntimeError):
    """TensorFlow Lite Micro could not load or run the model."""


@dataclasses.dataclass
class _TFLMRun:
    ok: bool
    crashed: bool
    stderr: str
    arena_used: int | None


def _run_worker(model_path, arena_bytes, inputs_path=None, outputs_path=None):
    # Started through runpy with -P rather than as `python _tflm_worker.py`: a script's
    # directory would go first on sys.path, and modules of this package (files.py, result.py,
    # ...) could then shadow top-level ones of the same name.
    isolate = ["-P"] if sys.version_info >= (3, 11) else []
    command = [
        sys.executable,
        *isolate,
        "-c",
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], "
        "run_name='__main__')",
        _WORKER,
        model_path,
        str(int(arena_bytes)),
    ]
    if inputs_path is not None:
        command += [inputs_path, outputs_path]
    process = subprocess.run(command, capture_output=True, text=True, timeout=600)
    used = re.search(r"Arena allocation total (\d+) bytes", process.stderr)
    return _TFLMRun(
        ok=process.returncode == 0,
        crashed=process.returncode < 0,
        stderr=process.stderr,
        arena_used=int(used.group(1)) if used else None,
    )


def missing_op_from_log(log):
    """Op names TFLM reported it has no kernel for, from its error log."""
    return sorted(set(re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", log)))


def _explain(run):
    missing = missing_op_from_log(run.stderr)
    if missing:
        return f"TFLM has no kernel for: {', '.join(missing)}."
    if run.crashed:
        return "The TFLM interpreter crashed (segmentation fault)."
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    return " ".join(lines[-3:]) if lines else "TFLM failed without a message."


def _align(size):
    return -(-size // _ARENA_ALIGNMENT) * _ARENA_ALIGNMENT


def find_min_arena(model):
    """Smallest TFLM arena (bytes, a multiple of 16) that loads and runs `model` once.

    A generous arena is tried first; TFLM's recording allocator reports what it used, and a
    bisection over arena sizes (each try in its own process, since too small an arena crashes
    TFLM) confirms the smallest one that works.

    Args:
        model: Path or bytes of an int8 `.tflite` file without sparse encoding.

    Example:

    ```python
    arena = find_min_arena("model.tflite")  # e.g. 2976
    ```
    """
    data = load_bytes(model)
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "model.tflite")
        with open(path, "wb") as handle:
            handle.write(data)
        high = _align(len(data) * 2 + 64 * 1024)
        first = _run_worker(path, high)
        while not first.ok and first.crashed and high < _MAX_ARENA:
            high *= 4
            first = _run_worker(path, high)
        if not first.ok:
            raise TFLMError(f"TFLM cannot run this model. {_explain(first)}")
        low = 0
        # The recorded total is almost always the answer: try it and one step below it first.
        for candidate in (first.arena_used, (first.arena_used or 0) - _ARENA_ALIGNMENT):
            if candidate is not None and low < candidate < high:
                if _run_worker(path, candidate).ok:
                    high = candidate
                else:
                    low = candidate
        while high - low > _ARENA_ALIGNMENT:
            middle = _align((low + high) // 2)
            if middle >= high:
                break
            if _run_worker(path, middle).ok:
                high = middle
            else:
                low = middle
        return high


def run_tflm(model, inputs, arena_bytes):
    """Raw TFLM outputs for `inputs` (already in the input tensor's dtype), one row per sample.

    Args:
        model: Path or bytes of the `.tflite` file.
        inputs: Array `(num_samples, *input_shape)` in the input tensor's dtype.
        arena_bytes: Arena size given to TFLM.
    """
    data = load_bytes(model)
    with tempfile.TemporaryDirectory() as workdir:
        paths = [os.path.join(workdir, name) for name in ("m.tflite", "x.npy", "y.npy")]
        with open(paths[0], "wb") as handle:
            handle.write(data)
        np.save(paths[1], np.asarray(inputs))
        run = _run_worker(paths[0], arena_bytes, paths[1], paths[2])
        if not run.ok:
            raise TFLMError(f"TFLM failed to run the model. {_explain(run)}")
        return np.load(paths[2])


def compare(keras_outputs, runtime_outputs, *, runtime, quantized, output_scale=None):
    """A `RuntimeCheck` of `runtime_outputs` against `keras_outputs` (same shapes, float).

    Args:
        keras_outputs: Keras model outputs, `(num_samples, ...)`.
        runtime_outputs: Dequantized outputs of the exported file for the same inputs.
        runtime: Label for the report.
        quantized: Whether the file is full-integer (changes the tolerance).
        output_scale: Quantization step of the output tensor (int8 files).
    """
    keras_outputs = np.asarray(keras_outputs, dtype=np.float32)
    runtime_outputs = np.asarray(runtime_outputs, dtype=np.float32).reshape(keras_outputs.shape)
    error = float(np.max(np.abs(keras_outputs - runtime_outputs)))
    tolerance = int8_tolerance(keras_outputs, output_scale) if quantized else float_tolerance()
    top1 = None
    if keras_outputs.ndim == 2 and keras_outputs.shape[1] > 1:
        agree = np.argmax(keras_outputs, axis=1) == np.argmax(runtime_outputs, axis=1)
        top1 = float(np.mean(agree))
    return RuntimeCheck(
        runtime=runtime,
        samples=int(keras_outputs.shape[0]),
        max_abs_error=error,
        tolerance=float(tolerance),
        passed=bool(error <= tolerance),
        top1_agreement=top1,
    )
