"""`inspect_tflite`: what is in a `.tflite` file, why it is (not) fast, and how fast it is.

The XNNPACK check encodes the conditions under which XNNPACK's sparse (NCHW) inference takes
over a float model, as measured and read from XNNPACK's sources (docs/export.md, "XNNPACK sparse
inference"): the sparse region starts with a 3x3 stride-2 CONV_2D on 3 input channels with
explicit padding 1, ends in a spatial MEAN or DEPTH_TO_SPACE, holds only 1x1 CONV_2D, 3x3 / 5x5
DEPTHWISE_CONV_2D, ADD, MUL, unary activations and bilinear resizes, and at least 2/3 of all 1x1
conv weights are zero.
"""

import dataclasses
import os
import platform

from keras_prune.export.flatbuffer import load_bytes, read_model
from keras_prune.export.verify import XnnpackRefusedError, generated_inputs, run_litert

_UNARY = {
    "ABS",
    "CEIL",
    "ELU",
    "FLOOR",
    "HARD_SWISH",
    "LEAKY_RELU",
    "LOGISTIC",
    "NEG",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "ROUND",
    "SQRT",
    "SQUARE",
    "TANH",
}
_REGION_OPS = _UNARY | {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "RESIZE_BILINEAR"}
_REGION_ENDS = {"MEAN", "DEPTH_TO_SPACE"}
_WEIGHT_FEEDERS = {"DENSIFY", "DEQUANTIZE"}
_MIN_ZERO_FRACTION = 2.0 / 3.0


@dataclasses.dataclass
class XnnpackSparseCheck:
    """Whether XNNPACK's sparse inference would run this model, and why not, op by op.

    Args:
        eligible: True when every condition holds.
        reasons: One line per failed condition, naming the op and its tensor (layer) name.
        zero_fraction_1x1: Fraction of zero weights over all 1x1 convs in the region.
        notes: Context that is not a failed condition (e.g. the CPU this runs on).
    """

    eligible: bool
    reasons: list
    zero_fraction_1x1: float | None
    notes: list

    def to_dict(self):
        return dataclasses.asdict(self)


def _layer(info, op):
    names = [info.tensors[i].name for i in op.outputs]
    return f"op {op.index} {op.name} ({names[0][:60] if names else '?'})"


def _is_weight_feeder(info, op):
    source = info.operand(op, 0)
    return op.name in _WEIGHT_FEEDERS and source is not None and source.constant


def _weights(info, op):
    """The rank-4 weight operand of a convolution, or None if the op lacks one."""
    weights = info.operand(op, 1)
    return weights if weights is not None and len(weights.shape) == 4 else None


def _constant(info, tensor_index):
    return info.constants.get(tensor_index) is not None


def _first_conv_problems(info, compute, position):
    """Problems with the op that must open the sparse region."""
    op = compute[position]
    problems = []
    where = _layer(info, op)
    if op.name != "CONV_2D":
        return [f"{where}: the sparse region must start with a 3x3 stride-2 CONV_2D"]
    weights = _weights(info, op)
    options = op.options
    if weights is None or options is None:
        return [f"{where}: has no rank-4 weights or no convolution options (malformed op)"]
    _, height, width, channels = weights.shape
    if (height, width) != (3, 3):
        problems.append(f"{where}: first conv kernel is {height}x{width}, needs 3x3")
    if (options.strideH, options.strideW) != (2, 2):
        problems.append(
            f"{where}: first conv stride is {options.strideH}x{options.strideW}, needs 2x2"
        )
    if channels != 3:
        problems.append(f"{where}: first conv has {channels} input channels, needs 3")
    padded = position > 0 and compute[position - 1].name == "PAD"
    if padded:
        pad = compute[position - 1]
        amounts = None
        paddings = info.operand(pad, 1)
        if paddings is not None and _constant(info, paddings.index) and paddings.size % 2 == 0:
            amounts = info.values(paddings.index).reshape(-1, 2).tolist()
        if amounts is None or amounts[1:3] != [[1, 1], [1, 1]]:
            problems.append(
                f"{_layer(info, pad)}: explicit padding must be 1 on every spatial side, "
                f"found {amounts}"
            )
    if options.padding != 1 or not padded:  # Padding.VALID == 1
        problems.append(
            f"{where}: needs explicit padding 1 (Keras: ZeroPadding2D(1) then padding='valid'); "
            "padding='same' pads asymmetrically at stride 2"
        )
    return problems


def check_xnnpack_sparse(model):
    """Checks, op by op, whether XNNPACK's sparse inference applies to a `.tflite` file.

    Args:
        model: Path, bytes or `ModelInfo` of a `.tflite` file.

    Returns:
        An `XnnpackSparseCheck`.

    Example:

    ```python
    # docs: slow
    kp.export.to_tflite(pruned, "model.tflite")
    check = kp.export.check_xnnpack_sparse("model.tflite")
    print(check.eligible, *check.reasons, sep="\\n")
    ```
    """
    info = model if hasattr(model, "ops") else read_model(model)
    reasons, notes = [], []
    input_dtype = info.tensors[info.inputs[0]].dtype if info.inputs else "none"
    if input_dtype != "float32" or any(op.name == "QUANTIZE" for op in info.ops):
        reasons.append(
            f"model is quantized (input {input_dtype}): XNNPACK's sparse inference is float only"
        )
    if not any(op.name == "DENSIFY" for op in info.ops):
        reasons.append(
            "no sparse-encoded conv weights (no DENSIFY op): prune, then export with "
            "target='mobile'; XNNPACK turns sparse inference on only for such weights"
        )
    compute = [op for op in info.ops if not _is_weight_feeder(info, op)]
    first = next((i for i, op in enumerate(compute) if op.name not in ("PAD", "RESHAPE")), None)
    zero_fraction = None
    if first is None:
        reasons.append("the model has no compute op")
    else:
        reasons += _first_conv_problems(info, compute, first)
        total, zeros, end = 0, 0, None
        for op in compute[first + 1 :]:
            where = _layer(info, op)
            if op.name in _REGION_ENDS:
                end = op
                break
            if op.name not in _REGION_OPS:
                reasons.append(
                    f"{where}: not supported in XNNPACK's sparse (NCHW) region, which must be "
                    "closed by a spatial MEAN (GlobalAveragePooling2D) or DEPTH_TO_SPACE first"
                )
                break
            if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and _weights(info, op) is None:
                reasons.append(f"{where}: has no rank-4 weights (malformed op)")
                continue
            if op.name == "CONV_2D":
                weights = _weights(info, op)
                if weights.shape[1:3] != (1, 1):
                    reasons.append(
                        f"{where}: only 1x1 convolutions run sparse; kernel is "
                        f"{weights.shape[1]}x{weights.shape[2]}"
                    )
                    continue
                source = info.constant_source(weights.index)
                if source is not None and source.density is not None:
                    total += source.size
                    zeros += source.size - round(source.density * source.size)
            if op.name == "DEPTHWISE_CONV_2D":
                kernel = _weights(info, op).shape[1:3]
                if kernel not in ((3, 3), (5, 5)):
                    reasons.append(
                        f"{where}: depthwise kernel {kernel[0]}x{kernel[1]}, needs 3x3 or 5x5"
                    )
        else:
            reasons.append(
                "no spatial MEAN (GlobalAveragePooling2D) or DEPTH_TO_SPACE closes the sparse "
                "region"
            )
        if total:
            zero_fraction = zeros / total
            if zero_fraction < _MIN_ZERO_FRACTION:
                reasons.append(
                    f"only {100 * zero_fraction:.1f}% of 1x1 conv weights are zero; XNNPACK "
                    "needs at least 66.7%"
                )
        elif end is not None:
            reasons.append("no 1x1 CONV_2D in the region: nothing for the sparse kernels to do")
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        notes.append(
            "this is an x86 CPU: XNNPACK switches its sparse path off when AVX is present, so "
            "sparse speedups show on ARM phones, not here"
        )
    return XnnpackSparseCheck(
        eligible=not reasons, reasons=reasons, zero_fraction_1x1=zero_fraction, notes=notes
    )


@dataclasses.dataclass
class InspectReport:
    """What `inspect_tflite` found. `print(report)` shows tables; `to_dict()` gives data.

    Args:
        path: The file inspected (or `"<bytes>"`).
        model: Its `ModelInfo` (ops, tensors, sizes).
        xnnpack: The `XnnpackSparseCheck`.
        latency_us: `{"xnnpack": ..., "builtin": ...}` median microseconds on LiteRT, or
            empty when latency was not measured.
    """

    path: str
    model: object
    xnnpack: XnnpackSparseCheck
    latency_us: dict

    def to_dict(self):
        return {
            "path": self.path,
            "model": self.model.to_dict(),
            "xnnpack": self.xnnpack.to_dict(),
            "latency_us": self.latency_us,
        }

    def __str__(self):
        info = self.model
        lines = [f"{self.path}: {info.file_bytes:,} B (gzip {info.gzip_bytes:,} B)", ""]
        lines.append("size breakdown")
        for kind, count in info.size_breakdown().items():
            lines.append(f"  {kind:<20} {count:>12,} B")
        lines += ["", "ops"]
        for name, count in info.op_counts().items():
            lines.append(f"  {name:<28} x{count}")
        lines += ["", "constant tensors"]
        header = f"  {'name':<50} {'shape':>14} {'dtype':>8} {'bytes':>10} {'zeros':>7}  encoding"
        lines.append(header)
        for tensor in info.tensors:
            if not tensor.constant:
                continue
            shape = "x".join(str(d) for d in tensor.shape) or "scalar"
            zeros = "-" if tensor.density is None else f"{100 * (1 - tensor.density):.1f}%"
            stored = tensor.data_bytes + tensor.index_bytes
            lines.append(
                f"  {tensor.name[:50]:<50} {shape:>14} {tensor.dtype:>8} {stored:>10,} "
                f"{zeros:>7}  {tensor.encoding}"
            )
        lines += [
            "",
            "XNNPACK sparse inference: "
            + ("eligible" if self.xnnpack.eligible else "not taken, because"),
        ]
        lines += [f"  - {reason}" for reason in self.xnnpack.reasons]
        lines += [f"  note: {note}" for note in self.xnnpack.notes]
        if self.latency_us:
            lines += ["", "latency (LiteRT, 1 thread, median)"]
            xnnpack = self.latency_us["xnnpack"]
            lines.append(
                "  with XNNPACK      "
                + (
                    "  refused (XNNPACK will not delegate this file)"
                    if xnnpack is None
                    else f"{xnnpack:>10,.1f} us"
                )
            )
            lines.append(f"  built-in kernels  {self.latency_us['builtin']:>10,.1f} us")
        return "\n".join(lines)


def inspect_tflite(model, *, latency_runs=50):
    """Reports a `.tflite` file's ops, per-tensor sparsity and encoding, sizes, XNNPACK
    eligibility (with reasons) and latency with and without XNNPACK.

    The file is read by a parser that checks every offset, so a corrupted file raises
    `InvalidModelFileError`; latency is measured in a child process, so a file that crashes
    LiteRT raises `RuntimeCheckError` (stage `"latency"`) instead of ending this process.

    Args:
        model: Path or bytes of a `.tflite` file.
        latency_runs: Timed invocations per latency figure; 0 skips the latency measurement.
            Inputs are generated (`verify.generated_inputs`): normal floats, int8 values over
            their range, zeros for token ids.

    Example:

    ```python
    # docs: slow
    kp.export.to_tflite(pruned, "model.tflite")
    print(kp.export.inspect_tflite("model.tflite"))
    ```
    """
    if isinstance(latency_runs, bool) or not isinstance(latency_runs, int) or latency_runs < 0:
        raise ValueError(f"Expected `latency_runs` >= 0. Received: latency_runs={latency_runs!r}")
    data = load_bytes(model)
    info = read_model(model if isinstance(model, str | os.PathLike) else data)
    latency = {}
    if latency_runs:
        steps = [
            {"kind": "latency", "xnnpack": xnnpack, "runs": latency_runs, "warmup": 5}
            for xnnpack in (True, False)
        ]
        try:
            _, latency = run_litert(data, generated_inputs(info), steps)
        except XnnpackRefusedError:
            _, latency = run_litert(data, generated_inputs(info), steps[1:])
            latency["xnnpack"] = None
    path = os.fspath(model) if isinstance(model, str | os.PathLike) else "<bytes>"
    return InspectReport(
        path=str(path), model=info, xnnpack=check_xnnpack_sparse(info), latency_us=latency
    )
