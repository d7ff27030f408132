"""Export to TFLite for phones and microcontrollers, checked on the runtimes that will run it.

`to_tflite` strips keras_prune wrappers, converts with the settings of the chosen target, runs
the file on LiteRT (with and without XNNPACK) or TensorFlow Lite Micro, compares it with Keras,
measures it, and only then writes it. `inspect_tflite` reports on any `.tflite` file. Native
work (converter, interpreters) runs in child processes: a crash there raises an exception.
"""

from keras_prune.export import metadata
from keras_prune.export.errors import (
    ConversionError,
    InvalidModelFileError,
    RuntimeCheckError,
    StageError,
)
from keras_prune.export.exporter import ExportVerificationError, to_tflite
from keras_prune.export.files import recover
from keras_prune.export.flatbuffer import read_model
from keras_prune.export.inspection import InspectReport, check_xnnpack_sparse, inspect_tflite
from keras_prune.export.loading import load_model
from keras_prune.export.policy import check_xnnpack_sparse_model, xnnpack_filter
from keras_prune.export.result import ExportResult
from keras_prune.export.targets import TARGETS, Target, get_target
from keras_prune.export.verify import (
    RuntimeCheck,
    find_min_arena,
    measure_latencies,
    measure_latency,
    predict,
)

__all__ = [
    "TARGETS",
    "ConversionError",
    "ExportResult",
    "ExportVerificationError",
    "InspectReport",
    "InvalidModelFileError",
    "RuntimeCheck",
    "RuntimeCheckError",
    "StageError",
    "Target",
    "check_xnnpack_sparse",
    "find_min_arena",
    "get_target",
    "inspect_tflite",
    "load_model",
    "measure_latencies",
    "measure_latency",
    "predict",
    "read_model",
    "recover",
    "to_tflite",
    "xnnpack_filter",
    "check_xnnpack_sparse_model",
]
