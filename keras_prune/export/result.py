"""`ExportResult`: what `to_tflite` wrote and what the runtimes measured."""

import dataclasses


def _bytes(count):
    return "-" if count is None else f"{count:,} B"


def _micros(value):
    return "-" if value is None else f"{value:,.1f} us"


@dataclasses.dataclass
class ExportResult:
    """Report of one export. `print(result)` shows a table; `to_dict()` gives plain data.

    Args:
        path: The `.tflite` file written.
        target: Target name (`"mobile"`, `"mobile-int8"`, `"mcu"`).
        target_description: One line describing the target.
        file_bytes: Size of the `.tflite` file.
        gzip_bytes: Its size after gzip -9.
        size_breakdown: Bytes of dense constants, sparse values, sparse indices, the rest.
        ops: Op name -> count.
        sparse_tensors: One dict per sparse-encoded tensor: name, shape, encoding, density.
        input_quantization: `{"scale", "zero_point"}` of the input tensor (int8 files).
        output_quantization: Same for the output tensor.
        checks: `RuntimeCheck`s: the file against Keras on each runtime it was run on.
        latency_us: Median `invoke()` time on LiteRT: `{"xnnpack": ..., "builtin": ...}`.
        arena_bytes: Smallest TFLM arena that ran the model (`"mcu"` only).
        extra_files: Other files written (the MCU C sources).
        stripped_wrappers: Whether keras_prune wrappers were stripped before conversion.
        metadata: What happened to TFLite metadata.
        notes: Anything else worth knowing about this file.
        inputs: One dict per model input, in `model.inputs` order: Keras name, shape in the
            file, dtype and quantization (`{"scale", "zero_point"}` for int8 inputs).
        outputs: The same per model output.
        objective: The `objective` passed to `to_tflite` (`"latency"` or `"size"`).
        storage: How the weights are stored in the file written: `"sparse"` (every weight the
            converter sparse-encodes), `"mixed"` (some sparse, the others dense) or `"dense"`.
        sparse_latency_us: Median latency on LiteRT with XNNPACK of the sparse-encoded
            candidate (the sparse or mixed file), timed interleaved with the dense file (None
            when not timed or refused by XNNPACK).
        dense_latency_us: The same for the dense-storage file.
        latency_vs_dense: Median latency of the file written / that of the dense-storage file,
            from the same interleaved timing (1.0 when dense storage was written; None when the
            two were not compared: `latency_runs=0`, the `"mcu"` target, nothing
            sparse-encoded, or `objective="size"` with a file XNNPACK refuses).
        tensor_storage: One dict per weight the converter sparse-encodes: `name`, `shape`,
            `op`, `encoding` (the converter's), `storage` (`"sparse"` or `"dense"` in the file
            written) and `reason`.
    """

    path: str
    target: str
    target_description: str
    file_bytes: int
    gzip_bytes: int
    size_breakdown: dict
    ops: dict
    sparse_tensors: list
    input_quantization: dict | None
    output_quantization: dict | None
    checks: list
    latency_us: dict
    arena_bytes: int | None = None
    extra_files: list = dataclasses.field(default_factory=list)
    stripped_wrappers: bool = False
    metadata: str = "not requested"
    notes: list = dataclasses.field(default_factory=list)
    inputs: list = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    objective: str = "latency"
    storage: str = "dense"
    sparse_latency_us: float | None = None
    dense_latency_us: float | None = None
    latency_vs_dense: float | None = None
    tensor_storage: list = dataclasses.field(default_factory=list)

    @property
    def passed(self):
        """Whether every runtime check passed."""
        return all(check.passed for check in self.checks)

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["passed"] = self.passed
        return data

    def _storage_row(self):
        row = f"{self.storage} (objective={self.objective!r})"
        if self.latency_vs_dense is not None:
            sparse = _micros(self.sparse_latency_us)
            row += (
                f": {self.latency_vs_dense:.2f}x the dense file's latency on XNNPACK "
                f"(sparse {sparse}, dense {_micros(self.dense_latency_us)})"
            )
        return row

    def __str__(self):
        rows = [("file", f"{self.path}")]
        rows.append(("target", f"{self.target}: {self.target_description}"))
        rows.append(("size", f"{_bytes(self.file_bytes)} (gzip {_bytes(self.gzip_bytes)})"))
        breakdown = self.size_breakdown
        rows.append(
            (
                "  of which",
                f"dense constants {_bytes(breakdown['dense_constants'])}, sparse values "
                f"{_bytes(breakdown['sparse_values'])}, sparse indices "
                f"{_bytes(breakdown['sparse_indices'])}, graph+metadata "
                f"{_bytes(breakdown['graph_and_metadata'])}",
            )
        )
        for kind, ports in (("input", self.inputs), ("output", self.outputs)):
            if len(self.inputs) + len(self.outputs) <= 2:
                break
            for port in ports:
                quantization = port.get("quantization")
                scale = (
                    f", scale {quantization['scale'][0]:.6g}, zero point "
                    f"{quantization['zero_point'][0]}"
                    if quantization
                    else ""
                )
                shape = "x".join(str(d) for d in port["shape"])
                rows.append((kind, f"{port['name']}: {shape} {port['dtype']}{scale}"))
        rows.append(("storage", self._storage_row()))
        for tensor in self.tensor_storage:
            rows.append(
                (
                    "",
                    f"{tensor['name'][:40]:<40} {tensor['op']:<16} {tensor['storage']:<6} "
                    f"{tensor['reason']}",
                )
            )
        rows.append(("ops", ", ".join(f"{name} x{count}" for name, count in self.ops.items())))
        rows.append(("sparse tensors", str(len(self.sparse_tensors))))
        for tensor in self.sparse_tensors:
            shape = "x".join(str(d) for d in tensor["shape"])
            rows.append(
                (
                    "",
                    f"{tensor['name'][:48]:<48} {shape:>12}  {tensor['encoding']:<26} "
                    f"{100 * tensor['density']:5.1f}% nonzero",
                )
            )
        for quantization, label in (
            (self.input_quantization, "input"),
            (self.output_quantization, "output"),
        ):
            if quantization:
                rows.append(
                    (
                        f"{label} int8",
                        f"scale {quantization['scale'][0]:.6g}, "
                        f"zero point {quantization['zero_point'][0]}",
                    )
                )
        for check in self.checks:
            top1 = (
                ""
                if check.top1_agreement is None
                else f", top-1 agreement {100 * check.top1_agreement:.1f}%"
            )
            if check.outputs:
                top1 += f" (worst of {len(check.outputs)} outputs)"
            verdict = "PASS" if check.passed else "FAIL"
            rows.append(
                (
                    f"check {check.runtime}",
                    f"{verdict}: max |error| {check.max_abs_error:.3g} "
                    f"(tolerance {check.tolerance:.3g}) on {check.samples} samples{top1}",
                )
            )
        if self.latency_us:
            rows.append(
                (
                    "latency",
                    f"XNNPACK {_micros(self.latency_us.get('xnnpack'))} | built-in "
                    f"{_micros(self.latency_us.get('builtin'))} (LiteRT, median, 1 thread)",
                )
            )
        else:
            rows.append(("latency", "not measured (latency_runs=0)"))
        if self.arena_bytes is not None:
            rows.append(("TFLM arena", _bytes(self.arena_bytes)))
        for path in self.extra_files:
            rows.append(("also wrote", path))
        rows.append(("wrappers", "stripped" if self.stripped_wrappers else "none found"))
        rows.append(("metadata", self.metadata))
        for note in self.notes:
            rows.append(("note", note))
        width = max(len(label) for label, _ in rows)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
