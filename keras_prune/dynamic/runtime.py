"""LiteRT in this process, for files `to_tflite` has verified.

`kp.export` runs native code in child processes because LiteRT can crash on a corrupted or
unusual file. The runtime helpers (`WidthPicker.interpreter`, `StagedRunner`) run the
interpreter in the caller's process instead, since a per-input child process would cost more
than the stages it saves: use them only on files written by `export_widths` /
`export_stages`, which ran each file on LiteRT and compared it with Keras first.
"""

import numpy as np


def interpreter(path, *, xnnpack=True, num_threads=1):
    """An allocated `ai_edge_litert.interpreter.Interpreter` for a verified file."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as error:  # pragma: no cover - installed with keras_prune[export]
        raise ImportError(
            "The runtime helpers need LiteRT: `pip install ai-edge-litert`."
        ) from error
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runtime = Interpreter(
        model_path=path, num_threads=num_threads, experimental_op_resolver_type=resolver
    )
    runtime.allocate_tensors()
    return runtime


class Port:
    """One signature input or output: its tensor index and (de)quantization."""

    def __init__(self, details):
        self.index = details["index"]
        self.shape = tuple(int(d) for d in details["shape"])
        self.dtype = details["dtype"]
        scale, zero_point = details["quantization"]
        self.scale = float(scale) if scale else None
        self.zero_point = int(zero_point)

    def quantize(self, values):
        if self.scale is None or np.dtype(self.dtype).kind == "f":
            return np.asarray(values, dtype=self.dtype)
        info = np.iinfo(self.dtype)
        quantized = np.round(np.asarray(values, np.float32) / self.scale + self.zero_point)
        return np.clip(quantized, info.min, info.max).astype(self.dtype)

    def dequantize(self, values):
        if self.scale is None or np.dtype(self.dtype).kind == "f":
            return np.asarray(values, dtype=np.float32)
        return (np.asarray(values, np.float32) - self.zero_point) * self.scale


class SignatureRunner:
    """Runs one file's default signature by name with `set_tensor` / `invoke` / `get_tensor`
    (cheaper per call than LiteRT's own signature runner)."""

    def __init__(self, path, *, xnnpack=True, num_threads=1):
        self.interpreter = interpreter(path, xnnpack=xnnpack, num_threads=num_threads)
        runner = self.interpreter.get_signature_runner()
        self.inputs = {name: Port(d) for name, d in runner.get_input_details().items()}
        self.outputs = {name: Port(d) for name, d in runner.get_output_details().items()}

    def __call__(self, **inputs):
        for name, values in inputs.items():
            port = self.inputs[name]
            self.interpreter.set_tensor(port.index, port.quantize(values))
        self.interpreter.invoke()
        return {
            name: port.dequantize(self.interpreter.get_tensor(port.index))
            for name, port in self.outputs.items()
        }


def measure_interleaved(paths, *, xnnpack=True, rounds=5, runs=20, warmup=5):
    """Median single-invoke latency (microseconds) of each verified file, in this process.

    Rounds alternate between the files, so machine load affects all of them alike: each
    file's figure is the median over rounds of the median of `runs` invocations, which makes
    the files comparable with each other (what a width picker needs).

    Returns:
        `[{"median": us, "low": us, "high": us}]` per file (low / high: the fastest and slowest
        round).
    """
    import statistics
    import time

    runtimes = []
    for path in paths:
        runner = SignatureRunner(path, xnnpack=xnnpack)
        rng = np.random.default_rng(0)
        for port in runner.inputs.values():
            values = rng.standard_normal(port.shape).astype(np.float32)
            runner.interpreter.set_tensor(port.index, port.quantize(values))
        for _ in range(warmup):
            runner.interpreter.invoke()
        runtimes.append(runner.interpreter)
    rounds_of = [[] for _ in runtimes]
    for _ in range(rounds):
        for interpreter_, medians in zip(runtimes, rounds_of, strict=True):
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                interpreter_.invoke()
                times.append((time.perf_counter() - start) * 1e6)
            medians.append(statistics.median(times))
    return [{"median": statistics.median(m), "low": min(m), "high": max(m)} for m in rounds_of]
