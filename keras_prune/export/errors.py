"""The errors the exporter raises, one class per kind of failure, each naming what to do.

The command line maps each class to an exit status (`keras_prune.cli.EXIT_CODES`), so a script
can tell a bad file from a failed conversion without reading the message.
"""


class InvalidModelFileError(ValueError):
    """A file is not a valid `.tflite` / `.keras` model (corrupted, truncated or another format).

    Attributes:
        path: The file, or None when bytes were given.
        partial_blocks: True when what is wrong is a weight the TFLite converter encoded in
            blocks that do not tile it (a Dense whose input width is not a multiple of 4 pruned
            in 1x4 blocks): LiteRT's sparse kernels cannot read it, the dense conversion can.
    """

    def __init__(self, message, path=None, partial_blocks=False):
        super().__init__(message)
        self.path = path
        self.partial_blocks = partial_blocks


class StageError(RuntimeError):
    """A stage of the export failed or its process crashed.

    Attributes:
        stage: `"convert"`, `"verify-litert"`, `"verify-tflm"` or `"latency"`.
        signal: Number of the signal that ended the stage's process, or None.
    """

    def __init__(self, message, *, stage, signal=None):
        super().__init__(message)
        self.stage = stage
        self.signal = signal


class ConversionError(StageError):
    """The TFLite converter refused the model, crashed, or produced ops no target runtime has."""

    def __init__(self, message, *, signal=None):
        super().__init__(message, stage="convert", signal=signal)


class RuntimeCheckError(StageError):
    """LiteRT or TensorFlow Lite Micro could not load or run the converted file."""
