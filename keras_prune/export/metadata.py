"""TFLite metadata (name, version, normalization, labels, pruning record) via tflite-support.

tflite-support is optional: its last release pins protobuf < 4 while TensorFlow 2.21 needs
protobuf >= 6, so pip cannot install both the normal way (docs/export.md, "Metadata"). Installed
with `pip install --no-deps tflite-support` (plus the system library libusb-1.0 its native
module links against), its metadata writers work beside TensorFlow. Without it the export goes
on without metadata and says so once per process.
"""

import json
import os
import warnings

from keras_prune.export.convert import all_layers
from keras_prune.export.files import temporary_directory

INSTALL_HINT = (
    "TFLite metadata needs tflite-support, which pins an old protobuf: install it with "
    "`pip install --no-deps tflite-support` (wheels exist up to Python 3.11) and, on "
    "Debian/Ubuntu, `apt-get install libusb-1.0-0`."
)

_warned_missing = False


def _writers():
    from tensorflow_lite_support.metadata.python.metadata_writers import (
        metadata_info,
        metadata_writer,
        writer_utils,
    )

    return metadata_info, metadata_writer, writer_utils


def available():
    """`(True, "")` when tflite-support's metadata writers import, else `(False, reason)`."""
    try:
        _writers()
    except ImportError as error:  # Also raised when libusb-1.0 is missing.
        return False, str(error)
    return True, ""


def pruning_record(model, wrapped_model=None):
    """What was pruned and how: per-layer kernel sparsity, plus the wrappers' settings if any.

    Args:
        model: The plain (stripped) Keras model that was exported.
        wrapped_model: The model as passed by the user, possibly with keras_prune wrappers.

    Example:

    ```python
    pruning_record(model)["layers"]["dense"]  # e.g. {"weights": 65536, "sparsity": 0.9}
    ```
    """
    layers = {}
    for layer in all_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or hasattr(layer, "layers"):
            continue
        values = kernel.numpy() if hasattr(kernel, "numpy") else kernel
        count = int(values.size)
        zeros = count - int((values != 0).sum())
        layers[layer.name] = {"weights": count, "sparsity": round(zeros / count, 6)}
    record = {"layers": layers}
    if wrapped_model is not None:
        wrappers = {}
        for layer in all_layers(wrapped_model):
            if type(layer).__module__.split(".")[0] != "keras_prune":
                continue
            config = dict(layer.get_config())
            config.pop("layer", None)
            wrappers[layer.name] = json.loads(json.dumps(config, default=str))
        record["wrappers"] = wrappers
    return record


def _input_metadata(metadata_info, tensor_type, name, shape, normalization):
    if len(shape) == 4 and shape[-1] in (1, 3) and normalization is not None:
        mean, std = normalization
        channels = shape[-1]
        return metadata_info.InputImageTensorMd(
            name=name,
            description="Input image; normalized as (pixel - mean) / std.",
            norm_mean=_per_channel(mean, channels),
            norm_std=_per_channel(std, channels),
            color_space_type=2 if channels == 1 else 1,  # GRAYSCALE / RGB
            tensor_type=tensor_type,
        )
    return metadata_info.TensorMd(name=name, description="Model input.")


def _per_channel(value, channels):
    values = [float(v) for v in value] if isinstance(value, list | tuple) else [float(value)]
    return values * channels if len(values) == 1 else values


def add_metadata(data, *, name, version, description, labels=None, normalization=None, record=None):
    """Returns `(bytes, status)`: `data` with TFLite metadata when tflite-support is present.

    Inputs and outputs are described in the file's tensor order under their signature names
    (the Keras names for files from `to_tflite`).

    Args:
        data: The `.tflite` bytes.
        name: Model name.
        version: Model version string.
        description: One-paragraph description.
        labels: `{output name: class names}`; each list is packed as a label file attached to
            its output (`labels.txt` for a single-output model, `<output>_labels.txt` else).
        normalization: `(mean, std)` applied to image inputs (rank 4, 1 or 3 channels),
            scalars or per channel.
        record: Dict packed as `pruning_record.json` (see `pruning_record`).

    Without tflite-support, returns `data` unchanged and a status naming how to install it
    (and warns once per process).

    Example:

    ```python
    data, status = add_metadata(data, name="digits", version="1", description="",
                                labels={"output": [str(i) for i in range(10)]})
    ```
    """
    global _warned_missing
    ok, reason = available()
    if not ok:
        if not _warned_missing:
            warnings.warn(f"No TFLite metadata written ({reason}). {INSTALL_HINT}", stacklevel=3)
            _warned_missing = True
        return data, "not written: tflite-support is not importable"
    from keras_prune.export.flatbuffer import read_model

    metadata_info, metadata_writer, writer_utils = _writers()
    info = read_model(data)
    labels = labels or {}
    input_types = writer_utils.get_input_tensor_types(bytearray(data))
    output_types = writer_utils.get_output_tensor_types(bytearray(data))
    with temporary_directory() as workdir:
        files = []
        input_md = [
            _input_metadata(
                metadata_info, tensor_type, input_name, info.tensors[index].shape, normalization
            )
            for input_name, index, tensor_type in zip(
                info.input_names(), info.inputs, input_types, strict=True
            )
        ]
        output_md = []
        output_names = info.output_names()
        for output_name, tensor_type in zip(output_names, output_types, strict=True):
            if output_name not in labels:
                output_md.append(metadata_info.TensorMd(name=output_name, description="Output."))
                continue
            file_name = "labels.txt" if len(output_names) == 1 else f"{output_name}_labels.txt"
            labels_path = os.path.join(workdir, file_name)
            with open(labels_path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(labels[output_name]) + "\n")
            files.append(labels_path)
            output_md.append(
                metadata_info.ClassificationTensorMd(
                    name=output_name,
                    label_files=[metadata_info.LabelFileMd(labels_path)],
                    tensor_type=tensor_type,
                )
            )
        record_path = os.path.join(workdir, "pruning_record.json")
        with open(record_path, "w", encoding="utf-8") as handle:
            json.dump({"normalization": normalization, **(record or {})}, handle, indent=1)
        files.append(record_path)
        writer = metadata_writer.MetadataWriter.create_from_metadata_info(
            bytearray(data),
            general_md=metadata_info.GeneralMd(name=name, version=version, description=description),
            input_md=input_md,
            output_md=output_md,
            associated_files=files,
        )
        with warnings.catch_warnings():
            # The record is packed as a model-level file no tensor refers to, which the
            # populator allows but warns about.
            warnings.filterwarnings("ignore", message=".*does not exist in the metadata.*")
            populated = writer.populate()
    packed = ", ".join(os.path.basename(path) for path in files)
    return bytes(populated), f"written ({packed})"
