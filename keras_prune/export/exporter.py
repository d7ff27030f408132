"""`to_tflite`: strip, convert, verify on the target's runtimes, measure, then write."""

import dataclasses
import os

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.export import convert as _convert
from keras_prune.export import files as _files
from keras_prune.export import mcu as _mcu
from keras_prune.export import metadata as _metadata
from keras_prune.export import precision as _precision
from keras_prune.export import storage as _storage
from keras_prune.export import verify as _verify
from keras_prune.export.errors import ConversionError
from keras_prune.export.flatbuffer import read_model
from keras_prune.export.result import ExportResult
from keras_prune.export.signature import Signature
from keras_prune.export.sparsity import compare_sparsity
from keras_prune.export.targets import get_target

# Samples compared with Keras when no verification data is given: enough to exercise every
# class of a small classifier, few enough to keep TFLM's one-process-per-run check quick.
DEFAULT_VERIFICATION_SAMPLES = 64
_PREDICT_BATCH = 256
_LATENCY_WARMUP = 5


class ExportVerificationError(RuntimeError):
    """The exported file disagrees with the Keras model beyond tolerance; nothing was written.

    Attributes:
        result: The `ExportResult` that would have been returned (its path was not written).
    """

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def _check_labels(labels, signature):
    """`labels` -> `{output name: labels}` for every output with one unit per label."""
    if labels is None:
        return {}
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise ValueError(
            f"Expected `labels` to be a list of class names (strings). Received: {labels!r}"
        )
    labels = list(labels)
    matching = {
        port.name: labels
        for port in signature.outputs
        if port.shape and port.shape[-1] == len(labels)
    }
    if not matching:
        units = [port.shape[-1] if port.shape else 1 for port in signature.outputs]
        if len(units) == 1:
            expected = f"one label per output unit ({units[0]})"
        else:
            pairs = zip(signature.outputs, units, strict=True)
            named = ", ".join(f"{port.key}: {count}" for port, count in pairs)
            expected = f"one label per unit of some output ({named})"
        raise ValueError(f"Expected {expected}. Received: {len(labels)} labels.")
    return matching


def _check_normalization(normalization):
    if normalization is None:
        return None
    if not isinstance(normalization, list | tuple) or len(normalization) != 2:
        raise ValueError(
            f"Expected `normalization` as (mean, std). Received: normalization={normalization!r}"
        )
    try:
        mean, std = (np.atleast_1d(np.asarray(value, dtype=np.float64)) for value in normalization)
    except (TypeError, ValueError):
        raise ValueError(
            f"Expected numbers in `normalization`. Received: normalization={normalization!r}"
        ) from None
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))) or np.any(std <= 0):
        raise ValueError(
            "Expected finite means and every std in `normalization` > 0. "
            f"Received: normalization={normalization!r}"
        )
    return [mean.tolist(), std.tolist()]


def _keras_outputs(model, signature, samples):
    # Called directly, not through model.predict: predict traces a new tf.function for every
    # model it sees, and TensorFlow warns about retracing after a few exports.
    batches = []
    for start in range(0, len(samples[0]), _PREDICT_BATCH):
        batch = [array[start : start + _PREDICT_BATCH] for array in samples]
        outputs = signature.name_outputs(model(signature.pack(batch), training=False))
        batches.append({name: _convert.as_numpy(value) for name, value in outputs.items()})
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def _tensor_map(info, signature):
    """`(inputs, outputs)`: signature name -> tensor index, checked against the file."""
    inputs, outputs = info.signature_inputs, info.signature_outputs
    missing = [p.name for p in signature.inputs if p.name not in inputs] + [
        p.name for p in signature.outputs if p.name not in outputs
    ]
    if missing:
        raise ConversionError(
            "The converted file's signature lacks inputs or outputs of the model: "
            f"{missing} (it has {sorted(inputs)} -> {sorted(outputs)})."
        )
    return (
        {p.name: inputs[p.name] for p in signature.inputs},
        {p.name: outputs[p.name] for p in signature.outputs},
    )


def _port_report(ports, tensors, info, quantized):
    report = []
    for port in ports:
        tensor = info.tensors[tensors[port.name]]
        report.append(
            {
                "name": port.key,
                "shape": [1, *tensor.shape[1:]],
                "dtype": tensor.dtype,
                "quantization": tensor.quantization if quantized and tensor.quantization else None,
            }
        )
    return report


def _notes(info, target, model, encoded):
    notes = []
    sparsity = compare_sparsity(model, info).note()
    if sparsity:
        notes.append(sparsity)
    densified = info.op_counts().get("DENSIFY", 0)
    if densified:
        notes.append(
            f"{densified} tensor(s) are stored sparse but densified at load (DENSIFY): "
            "smaller file, dense speed"
        )
    sparse_fc = [
        op
        for op in info.ops
        if op.name == "FULLY_CONNECTED"
        and info.operand(op, 1) is not None
        and info.operand(op, 1).sparse
    ]
    if sparse_fc:
        notes.append(
            f"{len(sparse_fc)} FULLY_CONNECTED op(s) run LiteRT's sparse kernel "
            "(XNNPACK leaves them to the built-in kernels)"
        )
    if target.sparse_encoding and not encoded:
        notes.append(
            "no tensor was sparse-encoded: the converter needs >= 30% exact zeros in a "
            "rank-2/4 weight (prune the model first)"
        )
    return notes


def _with_symbolic_inputs(model, data):
    """A subclassed model has no `inputs` to name a signature by: call it on a `keras.Input`
    shaped as it was built (or as one array of `data`) and export that Functional view, which
    computes the same. Models with inputs, and models this cannot be done for, are returned
    as they are (`Signature` then names the problem)."""
    if getattr(model, "inputs", None) or not isinstance(model, keras.Model) or not model.built:
        return model
    shape = (model.get_build_config() or {}).get("input_shape")
    known = isinstance(shape, list | tuple) and all(d is None or isinstance(d, int) for d in shape)
    if not known:
        shape = None
    if shape is None and isinstance(data, np.ndarray) and data.ndim >= 1:
        shape = (None, *data.shape[1:])
    if shape is None:
        return model
    plain, _ = _convert.strip_wrappers(model)
    try:
        inputs = keras.Input(batch_shape=(None, *tuple(shape)[1:]), name="input")
        return keras.Model(inputs, plain(inputs), name=plain.name)
    except Exception:  # noqa: BLE001  (a call that cannot run symbolically: Signature explains)
        return model


def to_tflite(
    model,
    path,
    *,
    target="mobile",
    calibration_data=None,
    labels=None,
    normalization=None,
    name=None,
    version="1",
    description="",
    verification_data=None,
    on_mismatch="raise",
    latency_runs=50,
    objective="latency",
    verbose=0,
):
    """Converts a Keras model to a verified `.tflite` file for phones or microcontrollers.

    keras_prune wrappers are stripped first. The file is run on the runtime of its target and
    compared with Keras before anything is written; `"mcu"` also writes `<stem>_data.cc`,
    `<stem>_data.h` (16-byte aligned C array, its length and arena size) and
    `<stem>_data_ops.h` (registers exactly the model's ops) next to `<stem>.tflite`. Either
    every file is written or none is. The converter and the runtimes run in child processes,
    so a crash in native code raises an exception here instead of ending the process.

    Args:
        model: A built Keras model (TensorFlow backend), pruned (wrapped or stripped) or not.
            It may take and return a single array, a list or a dict of arrays (keras-hub
            backbones take dicts of token ids and masks).
        path: Output `.tflite` path; its directory is created if missing.
        target: `"mobile"` (float32, sparse-encoded, XNNPACK), `"mobile-int8"` (full-integer,
            sparse-encoded) or `"mcu"` (full-integer, dense storage, TFLM).
        calibration_data: Typical inputs, shaped like the model's inputs with a leading
            sample axis: one array, a list in `model.inputs` order, or a dict keyed by input
            name. Required by the int8 targets (calibration, at most 500 samples used). Its
            shape fixes dimensions the model leaves open (e.g. sequence length).
        labels: Class names, one per output unit (metadata; enables the label file). With
            several outputs, attached to each output with that many units.
        normalization: `(mean, std)` the app applies to raw image inputs (metadata).
        name: Model name in the metadata; default: `model.name`.
        version: Model version in the metadata.
        description: Model description in the metadata.
        verification_data: Inputs compared with Keras, structured like `calibration_data`;
            default: its first 64 samples, or 64 generated samples (standard-normal floats,
            integers 0 or 1, e.g. token ids valid for any vocabulary).
        on_mismatch: `"raise"` (default: raise `ExportVerificationError`, write nothing) or
            `"warn"` (write anyway; the result shows FAIL).
        latency_runs: Timed invocations per latency figure (median reported); 0 skips timing.
        objective: For the sparse-encoding targets (`"mobile"`, `"mobile-int8"`), chosen per
            tensor. The model is converted twice, with sparse-encoded and with dense weights.
            `"latency"` (default) stores a weight sparse only where its op reads it sparse
            (float FULLY_CONNECTED with random or 1x4-block sparsity, int8 with 1x16 blocks)
            and every other weight dense (no DENSIFY op), times that file against the dense
            one on LiteRT with XNNPACK (interleaved rounds) and keeps it only if XNNPACK runs
            it and it is not slower (within 5% measurement noise), so the file is never slower
            than the dense export on the default runtime. `"size"` keeps every weight the
            converter encodes sparse (the smallest file), even where it runs slower or XNNPACK
            refuses it (the notes say so). The result reports the choice (`storage`,
            `tensor_storage`) and `latency_vs_dense`.
        verbose: 1 shows a progress bar over the stages (convert, LiteRT checks and timing,
            TFLM arena search and check for `"mcu"`, write); 0 is silent.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: an argument is invalid (the message names it and what to pass).
        ConversionError: the converter refused the model or crashed.
        RuntimeCheckError: LiteRT or TFLM refused the converted file or crashed on it.
        ExportVerificationError: the file disagrees with Keras (nothing written).

    Example:

    ```python
    # docs: slow
    import keras, numpy as np
    import keras_prune as kp
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    x = np.random.rand(100, 8, 8, 1).astype("float32")
    result = kp.export.to_tflite(model, "build/model.tflite", target="mcu",
                                 calibration_data=x)
    print(result)
    ```
    """
    validation.check_model("model", model)
    path = validation.check_path("path", path)
    target = get_target(target)
    if name is not None and not isinstance(name, str):
        raise ValueError(
            f"Expected `name` to be None or a string. Received: name={name!r} "
            f"(of type {type(name).__name__})"
        )
    _convert.check_backend()
    if on_mismatch not in ("raise", "warn"):
        raise ValueError(
            f'Expected `on_mismatch` "raise" or "warn". Received: on_mismatch={on_mismatch!r}'
        )
    if isinstance(latency_runs, bool) or not isinstance(latency_runs, int) or latency_runs < 0:
        raise ValueError(f"Expected `latency_runs` >= 0. Received: latency_runs={latency_runs!r}")
    objective = validation.check_choice("objective", objective, _storage.OBJECTIVES)
    model = _with_symbolic_inputs(
        model, verification_data if verification_data is not None else calibration_data
    )
    signature = Signature(model)
    if target.quantize and calibration_data is None:
        raise ValueError(
            f"Expected `calibration_data` for target={target.name!r}: full-integer "
            "quantization calibrates activation ranges on typical inputs. Pass an array of "
            "shape (num_samples, *input_shape), e.g. 100-500 training samples (a list or "
            "dict of such arrays for a model with several inputs)."
        )
    calibration = None
    if calibration_data is not None:
        calibration = signature.flatten(calibration_data, "calibration_data")
    samples = None
    if verification_data is not None:
        samples = signature.flatten(verification_data, "verification_data")
    signature = _convert.fixed_signature(signature, calibration, samples)
    if samples is None and calibration is not None:
        samples = [array[:DEFAULT_VERIFICATION_SAMPLES] for array in calibration]
    elif samples is None:
        samples = signature.generate(DEFAULT_VERIFICATION_SAMPLES)
    labels = _check_labels(labels, signature)
    normalization = _check_normalization(normalization)
    verbose = validation.check_int("verbose", verbose, minimum=0, maximum=2)
    stages = 4 if target.runtime == "tflm" else 3
    progress = keras.utils.Progbar(stages, verbose=verbose, unit_name="stage")
    with _files.removed_if_failed(os.path.dirname(os.path.abspath(os.fspath(path)))):
        path = _files.check_writable(path)
        directory, file_name = os.path.split(path)
        stem = file_name[: -len(".tflite")]
        _convert.isolation.start_converter()  # TensorFlow's import overlaps the work below.
        _files.clean_system_temp()
        _files.recover(directory)
        plain, stripped = _convert.strip_wrappers(model)
        plain, precision_note = _float32(plain, signature, samples)
        data = _convert.convert_checked(plain, target, calibration, signature)
        choice = _storage.StorageChoice("dense", data, encoded=False)
        if target.sparse_encoding and target.runtime == "litert":
            dense_target = dataclasses.replace(target, sparse_encoding=False)
            choice = _storage.choose_storage(
                data,
                lambda: _convert.convert_checked(plain, dense_target, calibration, signature),
                objective=objective,
                latency_runs=latency_runs,
                warmup=_LATENCY_WARMUP,
            )
            data = choice.data
        progress.update(1)
        if target.runtime == "tflm":
            missing = _mcu.unsupported_ops(read_model(data).op_names)
            if missing:
                raise ConversionError(
                    "Expected only ops TensorFlow Lite Micro implements. The converted model "
                    f"uses {', '.join(missing)}, which TFLM lacks. Replace the layers producing "
                    "them (the op names appear in `keras-prune inspect`)."
                )
        data, metadata_status = _metadata.add_metadata(
            data,
            name=name or plain.name,
            version=str(version),
            description=description,
            labels=labels,
            normalization=normalization,
            record=_metadata.pruning_record(plain, model if stripped else None),
        )
        run = _RuntimeChecks(data, signature, target)
        checks, latency, notes = run.checks(
            _keras_outputs(plain, signature, samples), samples, latency_runs, progress
        )
        files = {file_name: data}
        if target.runtime == "tflm":
            symbol = _mcu.c_identifier(f"{stem}_data")
            files.update(
                _mcu.c_sources(data, run.info.op_names, symbol=symbol, arena_bytes=run.arena)
            )
        if choice.note:
            notes.insert(0, choice.note)
        if precision_note:
            notes.insert(0, precision_note)
        result = run.result(
            path, files, checks, latency, notes + _notes(run.info, target, plain, choice.encoded)
        )
        result.stripped_wrappers, result.metadata = stripped, metadata_status
        result.objective, result.storage = objective, choice.storage
        result.sparse_latency_us = choice.sparse_latency_us
        result.dense_latency_us = choice.dense_latency_us
        result.latency_vs_dense = choice.latency_vs_dense
        result.tensor_storage = choice.tensors
        if not result.passed and on_mismatch == "raise":
            raise ExportVerificationError(
                "The exported model disagrees with Keras beyond tolerance; no file was written. "
                "Pass on_mismatch='warn' to write it anyway.\n" + str(result),
                result,
            )
        _files.commit_files(directory, stem, files)
        progress.update(stages, finalize=True)
        return result


def _float32(model, signature, samples):
    """`(model, note)`: the model, or its float32 copy and a note with how far the copy's
    outputs are from the mixed-precision original's."""
    copy, note = _precision.float32_copy(model)
    if note:
        ours = _keras_outputs(copy, signature, samples)
        theirs = _keras_outputs(model, signature, samples)
        drift = max(float(np.max(np.abs(ours[name] - theirs[name]))) for name in ours)
        note += f"; the float32 copy's outputs differ from the original's by <= {drift:.3g}"
    return copy, note


class _RuntimeChecks:
    """The converted file run on its target's runtimes, by signature name."""

    def __init__(self, data, signature, target):
        self.data, self.signature, self.target = data, signature, target
        self.info = read_model(data)
        self.input_tensors, self.output_tensors = _tensor_map(self.info, signature)
        self.arena = None

    def _outputs(self, raw):
        """Raw outputs `{tensor index: array}` -> dequantized `{output name: array}`."""
        return {
            name: _verify.dequantize(raw[index], self.info.tensors[index])
            for name, index in self.output_tensors.items()
        }

    def checks(self, expected, samples, latency_runs, progress):
        """`(checks, latency, notes)`: the file against `expected` on LiteRT with and without
        XNNPACK (and TFLM for `mcu`), and its latency."""
        info, quantized = self.info, self.target.quantize
        inputs = {
            self.input_tensors[port.name]: _verify.quantize(
                array, info.tensors[self.input_tensors[port.name]]
            )
            for port, array in zip(self.signature.inputs, samples, strict=True)
        }
        scales = {
            name: (info.tensors[index].quantization or {"scale": [None]})["scale"][0]
            for name, index in self.output_tensors.items()
        }
        steps = [{"kind": "predict", "xnnpack": xnnpack} for xnnpack in (True, False)]
        if latency_runs:
            steps += [
                dict(kind="latency", xnnpack=xnnpack, runs=latency_runs, warmup=_LATENCY_WARMUP)
                for xnnpack in (True, False)
            ]
        notes, runtimes = [], ["litert+xnnpack", "litert-builtin"]
        try:
            runs, latency = _verify.run_litert(self.data, inputs, steps)
        except _verify.XnnpackRefusedError as error:
            # Measured: XNNPACK will not delegate int8 FULLY_CONNECTED with unstructured, 1x4
            # or 2:4 sparsity; the built-in kernels run such files.
            steps = [step for step in steps if not step["xnnpack"]]
            runs, latency = _verify.run_litert(self.data, inputs, steps)
            runtimes = runtimes[1:]
            notes.append(
                f"XNNPACK refused this file ({str(error).split(': ', 1)[-1][:120]}); checked "
                "and timed on LiteRT's built-in kernels only"
            )
        checks = [
            _verify.compare(
                expected,
                self._outputs(raw),
                runtime=runtime,
                quantized=quantized,
                output_scale=scales,
            )
            for raw, runtime in zip(runs, runtimes, strict=True)
        ]
        progress.update(2)
        if self.target.runtime == "tflm":
            self.arena = _verify.find_min_arena(self.data)
            ordered = [inputs[index] for index in info.inputs]
            raw = dict(
                zip(info.outputs, _verify.tflm_outputs(self.data, ordered, self.arena), strict=True)
            )
            checks.append(
                _verify.compare(
                    expected,
                    self._outputs(raw),
                    runtime="tflm",
                    quantized=True,
                    output_scale=scales,
                )
            )
            progress.update(3)
        return checks, latency, notes

    def result(self, path, files, checks, latency, notes):
        info, quantized = self.info, self.target.quantize
        inputs = _port_report(self.signature.inputs, self.input_tensors, info, quantized)
        outputs = _port_report(self.signature.outputs, self.output_tensors, info, quantized)
        directory = os.path.dirname(path)
        return ExportResult(
            path=path,
            target=self.target.name,
            target_description=self.target.description,
            file_bytes=info.file_bytes,
            gzip_bytes=info.gzip_bytes,
            size_breakdown=info.size_breakdown(),
            ops=info.op_counts(),
            sparse_tensors=[
                dict(name=t.name, shape=list(t.shape), encoding=t.encoding, density=t.density)
                for t in info.sparse_tensors
            ],
            input_quantization=inputs[0]["quantization"] if len(inputs) == 1 else None,
            output_quantization=outputs[0]["quantization"] if len(outputs) == 1 else None,
            checks=checks,
            latency_us=latency,
            arena_bytes=self.arena,
            extra_files=[
                os.path.join(directory, name) for name in files if name != os.path.basename(path)
            ],
            notes=notes,
            inputs=inputs,
            outputs=outputs,
        )
