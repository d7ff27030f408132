"""The `keras-prune` command line.

    keras-prune export model.keras --target mcu --calibration x.npy --out build/
    keras-prune inspect build/model.tflite

Each subcommand is a pair of functions: one adds its parser, one runs it and returns an exit
status. Adding a subcommand means writing that pair and listing the first in `SUBCOMMANDS`.
"""

import argparse
import json
import os
import subprocess
import sys


def _add_export(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="convert a .keras model to a verified .tflite file (and C sources for MCUs)",
        description="Strip pruning wrappers, convert for a target, check the file on its "
        "runtime against Keras, and write it.",
    )
    parser.add_argument("model", help="path to a .keras model file")
    parser.add_argument(
        "--target", default="mobile", help='"mobile", "mobile-int8" or "mcu" (default: mobile)'
    )
    parser.add_argument(
        "--calibration",
        help=".npy array of typical inputs, shape (num_samples, *input_shape); required for "
        "int8 targets",
    )
    parser.add_argument(
        "--out", default="build", help="output directory (default: build); created if missing"
    )
    parser.add_argument("--labels", help="text file with one class name per line (TFLite metadata)")
    parser.add_argument(
        "--normalization",
        nargs=2,
        type=float,
        metavar=("MEAN", "STD"),
        help="input normalization the app applies (TFLite metadata)",
    )
    parser.add_argument("--name", help="model name in the metadata (default: the model's name)")
    parser.add_argument("--version", default="1", help="model version in the metadata")
    parser.add_argument("--description", default="", help="model description in the metadata")
    parser.add_argument(
        "--on-mismatch",
        choices=("raise", "warn"),
        default="raise",
        help="if the file disagrees with Keras: fail without writing (raise) or write anyway",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_export)


def _load_array(path, option):
    import numpy as np

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Expected {option} to name an existing .npy file. Received: {path!r}"
        )
    return np.load(path, allow_pickle=False)


def _run_export(args):
    import keras

    if keras.backend.backend() != "tensorflow":
        # Conversion needs TensorFlow; the .keras file loads on any backend, so run this same
        # command again in a process whose Keras uses TensorFlow.
        environment = dict(os.environ, KERAS_BACKEND="tensorflow")
        command = [sys.executable, "-m", "keras_prune.cli", *args.argv]
        return subprocess.call(command, env=environment)

    from keras_prune.export import get_target, to_tflite

    target = get_target(args.target)
    if not os.path.isfile(args.model):
        raise FileNotFoundError(
            f"Expected a path to an existing .keras file. Received: {args.model!r}"
        )
    calibration = _load_array(args.calibration, "--calibration") if args.calibration else None
    labels = None
    if args.labels:
        if not os.path.isfile(args.labels):
            raise FileNotFoundError(
                f"Expected --labels to name an existing text file. Received: {args.labels!r}"
            )
        with open(args.labels, encoding="utf-8") as handle:
            labels = [line.strip() for line in handle if line.strip()]
    try:  # Registers keras_prune's classes so wrapped models load; absent before the core lands.
        import keras_prune.pruning  # noqa: F401
    except ImportError:
        pass
    model = keras.saving.load_model(args.model)
    stem = os.path.splitext(os.path.basename(args.model))[0]
    result = to_tflite(
        model,
        os.path.join(args.out, f"{stem}.tflite"),
        target=target,
        representative_data=calibration,
        labels=labels,
        normalization=tuple(args.normalization) if args.normalization else None,
        name=args.name,
        version=args.version,
        description=args.description,
        on_mismatch=args.on_mismatch,
    )
    print(json.dumps(result.to_dict(), indent=1, default=str) if args.json else result)
    return 0 if result.passed else 1


def _add_inspect(subparsers):
    parser = subparsers.add_parser(
        "inspect",
        help="ops, per-tensor sparsity and encoding, sizes, XNNPACK eligibility, latency",
        description="Report what a .tflite file holds and how fast it runs on LiteRT.",
    )
    parser.add_argument("model", help="path to a .tflite file")
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=50,
        help="timed runs per latency figure, median reported; 0 skips timing (default: 50)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_run_inspect)


def _run_inspect(args):
    from keras_prune.export.inspection import inspect_tflite

    report = inspect_tflite(args.model, latency_runs=args.latency_runs)
    print(json.dumps(report.to_dict(), indent=1, default=str) if args.json else report)
    return 0


SUBCOMMANDS = [_add_export, _add_inspect]


def build_parser():
    """The argument parser with every subcommand in `SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="keras-prune", description="Pruning for Keras 3, exported to TFLite / LiteRT."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(subparsers)
    return parser


def main(argv=None):
    """Entry point of the `keras-prune` console script; returns the exit status.

    Args:
        argv: Arguments without the program name; default: `sys.argv[1:]`.

    Example:

    ```python
    from keras_prune.cli import main
    main(["inspect", "build/model.tflite", "--latency-runs", "0"])
    ```
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.handler(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        print(f"keras-prune {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
