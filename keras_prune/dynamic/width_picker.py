"""`WidthPicker`: the widest exported width that meets a latency budget, from measurements."""

from keras_prune.core import validation
from keras_prune.dynamic import manifest as manifest_lib
from keras_prune.dynamic import runtime


class WidthPicker:
    """Chooses a width of an exported slimmable model for a latency budget.

    The latencies are those `export_widths` measured on LiteRT (median of single-threaded
    invocations); measure on the device itself and pass `latencies_us` to pick from those
    instead.

    Args:
        manifest: path of a `<stem>_widths.json` written by `kp.dynamic.export_widths`.
        xnnpack: use the XNNPACK latencies (True) or the built-in kernels' (False).
        latencies_us: optional `{width: microseconds}` measured where the model will run.

    Example:

    ```python
    # docs: slow (TFLite export, verified on LiteRT)
    pretrained = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    slim = kp.dynamic.SlimmableModel(pretrained, widths=[0.25, 0.5, 1.0])
    slim.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    slim.fit(x, y, epochs=1, verbose=0)
    manifest = kp.dynamic.export_widths(slim, "build/slim", calibration_data=x)
    picker = kp.dynamic.WidthPicker(manifest["manifest_path"])
    width = picker.pick(budget_us=10_000)
    runtime = picker.interpreter(width)   # an ai_edge_litert Interpreter, allocated
    ```
    """

    def __init__(self, manifest, *, xnnpack=True, latencies_us=None):
        content = manifest_lib.read_manifest(manifest, manifest_lib.WIDTHS_KIND)
        self.xnnpack = validation.check_bool("xnnpack", xnnpack)
        key = "xnnpack" if xnnpack else "builtin"
        self.entries = sorted(content["widths"], key=lambda entry: entry["width"])
        self.paths = {entry["width"]: entry["path"] for entry in self.entries}
        if latencies_us is None:
            missing = [e["width"] for e in self.entries if key not in (e["latency_us"] or {})]
            if missing:
                raise ValueError(
                    f"The manifest has no {key} latency for widths {missing} (exported with "
                    "latency_runs=0?). Pass `latencies_us={width: microseconds}`."
                )
            latencies_us = {e["width"]: float(e["latency_us"][key]) for e in self.entries}
        self.latencies_us = {
            self._trained(width): validation.check_real(
                f"latencies_us[{width}]", value, low=0.0, low_open=True
            )
            for width, value in latencies_us.items()
        }

    @property
    def widths(self):
        return sorted(self.paths)

    def _trained(self, width):
        from keras_prune.surgery.width import check_trained_width

        return check_trained_width(width, self.widths)

    def pick(self, budget_us):
        """The widest width whose latency is at most `budget_us` microseconds.

        Raises:
            ValueError: even the narrowest width is slower than the budget (the message gives
                its latency).
        """
        budget = validation.check_real("budget_us", budget_us, low=0.0, low_open=True)
        fitting = [w for w in self.widths if self.latencies_us.get(w, float("inf")) <= budget]
        if not fitting:
            narrowest = self.widths[0]
            raise ValueError(
                f"Expected `budget_us` >= {self.latencies_us[narrowest]:.1f} (the latency of "
                f"the narrowest width, {narrowest}). Received: budget_us={budget_us!r}"
            )
        return fitting[-1]

    def path(self, width):
        """The `.tflite` file of a width."""
        return self.paths[self._trained(width)]

    def interpreter(self, width, *, num_threads=1):
        """An allocated LiteRT interpreter for `width`, in this process (the file was
        verified by `export_widths`; see `kp.dynamic.runtime`)."""
        return runtime.interpreter(self.path(width), xnnpack=self.xnnpack, num_threads=num_threads)
