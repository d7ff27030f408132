"""The `keras-prune` command line.

    keras-prune export model.keras --target mcu --calibration x.npy --out build/
    keras-prune inspect build/model.tflite
    keras-prune demo --out artifacts

Each subcommand is a pair of functions: one adds its parser, one runs it and returns an exit
status. Adding a subcommand means writing that pair and listing the first in `SUBCOMMANDS`.
Every failure ends in one line on stderr saying what went wrong and what to do, with an exit
status per kind of failure (`EXIT_CODES`); `--debug` adds the traceback.
"""

import argparse
import json
import os
import subprocess
import sys
import traceback
import warnings

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT_FILE = 3
EXIT_CONVERSION = 4
EXIT_VERIFICATION = 5
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "unexpected internal error (a bug: rerun with --debug and report it)",
    EXIT_USAGE: "usage: unknown option, invalid argument or option value",
    EXIT_BAD_INPUT_FILE: "bad input file: missing, unreadable, corrupted, or the wrong kind",
    EXIT_CONVERSION: "conversion failure: the TFLite converter refused the model or crashed",
    EXIT_VERIFICATION: "verification failure: the file disagrees with Keras, or a runtime "
    "(LiteRT, TFLM) refused it or crashed",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class InputFileError(Exception):
    """An input file the command needs cannot be used (exit status 3)."""


def _epilog():
    lines = ["exit statuses:"]
    lines += [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()]
    return "\n".join(lines)


def _add_export(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="convert a .keras model to a verified .tflite file (and C sources for MCUs)",
        description="Strip pruning wrappers, convert for a target, check the file on its "
        "runtime against Keras, and write it.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="path to a .keras model file")
    parser.add_argument(
        "--target", default="mobile", help='"mobile", "mobile-int8" or "mcu" (default: mobile)'
    )
    parser.add_argument(
        "--calibration",
        help=".npy array of typical inputs, shape (num_samples, *input_shape), or .npz with one "
        "array per input name; required for int8 targets",
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
        help="if the file disagrees with Keras: fail without writing (raise) or write anyway "
        "(warn; the exit status is still 5)",
    )
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=50,
        help="timed runs per latency figure, median reported; 0 skips timing (default: 50)",
    )
    parser.add_argument(
        "--objective",
        choices=("latency", "size"),
        default="latency",
        help="mobile targets, per weight: sparse only where its op reads it sparse, the file "
        "kept only if not slower than dense on LiteRT+XNNPACK (latency), or every weight the "
        "converter encodes (size; the smallest file) (default: latency)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_export)


def _load_array(path, option):
    import numpy as np

    if not os.path.isfile(path):
        raise InputFileError(
            f"{option} {path!r} does not exist. Save the array with `numpy.save(path, x)`."
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:  # NumPy raises ValueError, OSError, EOFError, ... on bad files.
        raise InputFileError(
            f"{option} {path!r} is not a valid .npy/.npz file ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no message'}). Save it with "
            "`numpy.save(path, x)` (or `numpy.savez(path, **arrays)` for several inputs)."
        ) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            try:
                return {key: loaded[key] for key in loaded.files}
            except Exception as error:  # A damaged member of the archive.
                raise InputFileError(
                    f"{option} {path!r} is a damaged .npz file ({type(error).__name__})."
                ) from None
    return loaded


def _load_labels(path):
    if not os.path.isfile(path):
        raise InputFileError(f"--labels {path!r} does not exist. Give a text file, one per line.")
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except (UnicodeDecodeError, OSError) as error:
        raise InputFileError(
            f"--labels {path!r} is not a UTF-8 text file ({type(error).__name__}). Give one "
            "class name per line."
        ) from None


def _run_export(args):
    import keras

    if keras.backend.backend() != "tensorflow":
        # Conversion needs TensorFlow; the .keras file loads on any backend, so run this same
        # command again in a process whose Keras uses TensorFlow.
        environment = dict(os.environ, KERAS_BACKEND="tensorflow")
        command = [sys.executable, "-m", "keras_prune.cli", *args.argv]
        return subprocess.call(command, env=environment)

    from keras_prune.export import get_target, to_tflite
    from keras_prune.export.loading import load_model

    target = get_target(args.target)
    if args.latency_runs < 0:
        raise ValueError(f"Expected --latency-runs >= 0. Received: {args.latency_runs}")
    calibration = _load_array(args.calibration, "--calibration") if args.calibration else None
    labels = _load_labels(args.labels) if args.labels else None
    model = load_model(args.model)
    stem = os.path.splitext(os.path.basename(args.model))[0] or "model"
    try:
        result = to_tflite(
            model,
            os.path.join(args.out, f"{stem}.tflite"),
            target=target,
            calibration_data=calibration,
            labels=labels,
            normalization=tuple(args.normalization) if args.normalization else None,
            name=args.name,
            version=args.version,
            description=args.description,
            on_mismatch=args.on_mismatch,
            latency_runs=args.latency_runs,
            objective=args.objective,
            # The stages' progress bar, for a person at a terminal; never inside piped output.
            verbose=1 if sys.stdout.isatty() and not args.json else 0,
        )
    except ValueError as error:
        if "`calibration_data`" not in str(error) or type(error) is not ValueError:
            raise
        # The data came from --calibration: say so rather than name the Python argument.
        raise ValueError(str(error).replace("`calibration_data`", "--calibration")) from None
    print(json.dumps(result.to_dict(), indent=1, default=str) if args.json else result)
    if not result.passed:
        print(
            f"keras-prune export: error: {result.path} was written but disagrees with Keras "
            "(--on-mismatch warn); see the FAIL lines above.",
            file=sys.stderr,
        )
        return EXIT_VERIFICATION
    return EXIT_OK


def _add_inspect(subparsers):
    parser = subparsers.add_parser(
        "inspect",
        help="ops, per-tensor sparsity and encoding, sizes, XNNPACK eligibility, latency",
        description="Report what a .tflite file holds and how fast it runs on LiteRT.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    from keras_prune.export.errors import InvalidModelFileError, RuntimeCheckError
    from keras_prune.export.inspection import inspect_tflite

    if args.latency_runs < 0:
        raise ValueError(f"Expected --latency-runs >= 0. Received: {args.latency_runs}")
    if os.path.isfile(args.model):
        with open(args.model, "rb") as handle:
            head = handle.read(8)
        if head[:4] == b"PK\x03\x04" or args.model.endswith((".keras", ".h5")):
            raise InvalidModelFileError(
                f"inspect expects a .tflite file; {args.model!r} is a Keras model. Export it "
                f"first: `keras-prune export {args.model} --out build/`, then inspect the "
                ".tflite file written there."
            )
    try:
        report = inspect_tflite(args.model, latency_runs=args.latency_runs)
    except RuntimeCheckError as error:
        # A file LiteRT cannot run is a bad input file here, not a failed export.
        raise InvalidModelFileError(
            f"{error} Pass --latency-runs 0 to see what the file holds without running it."
        ) from None
    print(json.dumps(report.to_dict(), indent=1, default=str) if args.json else report)
    return EXIT_OK


def _add_demo(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="train, prune, export and verify a digits CNN; print a before/after table; report",
        description="The README's demo: a CNN on scikit-learn's digits, pruned with a schedule, "
        "stripped, exported for mobile (LiteRT) and mcu (TFLM, C array), checked on both, "
        "compared before/after, and documented in a Markdown report with plots.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sparsity", type=float, default=0.9, help="final sparsity (0.9)")
    parser.add_argument("--epochs", type=int, default=12, help="pruning epochs (12)")
    parser.add_argument("--dense-epochs", type=int, default=15, help="baseline epochs (15)")
    parser.add_argument("--out", default="artifacts", help="output directory (artifacts)")
    parser.add_argument(
        "--targets",
        nargs="*",
        default=["mobile", "mcu"],
        help="export targets (default: mobile mcu); give none to skip the export",
    )
    parser.add_argument(
        "--latency-runs", type=int, default=50, help="timed LiteRT runs per figure (50)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write the report without PNGs")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args):
    from keras_prune.demo import run

    run(
        args.out,
        sparsity=args.sparsity,
        epochs=args.epochs,
        dense_epochs=args.dense_epochs,
        targets=args.targets,
        latency_runs=args.latency_runs,
        plots=not args.no_plots,
        verbose=0 if args.quiet else 1,
    )
    return EXIT_OK


SUBCOMMANDS = [_add_export, _add_inspect, _add_demo]


def build_parser():
    """The argument parser with every subcommand in `SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="keras-prune",
        description="Pruning for Keras 3, exported to TFLite / LiteRT.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_debug(parser, False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(subparsers)
    for subparser in subparsers.choices.values():
        # Accepted after the subcommand too; SUPPRESS keeps a --debug given before it.
        _add_debug(subparser, argparse.SUPPRESS)
    return parser


def _exit_code(error):
    """The exit status and the advice for an exception raised by a subcommand."""
    from keras_prune.export.errors import (
        ConversionError,
        InvalidModelFileError,
        RuntimeCheckError,
    )
    from keras_prune.export.exporter import ExportVerificationError

    if isinstance(error, InputFileError | InvalidModelFileError | FileNotFoundError):
        return EXIT_BAD_INPUT_FILE, ""
    if isinstance(error, ConversionError):
        return EXIT_CONVERSION, ""
    if isinstance(error, ExportVerificationError):
        return EXIT_VERIFICATION, ""
    if isinstance(error, RuntimeCheckError):
        return EXIT_VERIFICATION, ""
    if isinstance(error, ValueError | TypeError):
        return EXIT_USAGE, ""
    return EXIT_INTERNAL, " This is a bug in keras-prune: rerun with --debug and report it."


def _one_line(error):
    text = str(error).strip()
    from keras_prune.export.exporter import ExportVerificationError

    if isinstance(error, ExportVerificationError):
        failed = [check for check in error.result.checks if not check.passed]
        details = "; ".join(
            f"{check.runtime}: max |error| {check.max_abs_error:.3g} > tolerance "
            f"{check.tolerance:.3g}"
            for check in failed
        )
        return (
            f"the exported file disagrees with Keras ({details}); nothing was written. Check "
            "the calibration data, or pass --on-mismatch warn to write it anyway."
        )
    if isinstance(error, FileNotFoundError) and error.filename is not None:
        return f"{error.strerror}: {error.filename!r}"
    if isinstance(error, KeyError):
        text = repr(error)
    return " ".join(text.split()) or type(error).__name__


def _one_line_warnings(command):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"keras-prune {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    return show


def _add_debug(parser, default):
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="on an error, print its traceback too",
    )


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
    if not args.debug:
        # TensorFlow's C++ start-up messages are not errors; keep stderr to what matters.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = _one_line_warnings(args.command)
        try:
            return args.handler(args)
        except KeyboardInterrupt:
            print(f"keras-prune {args.command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:  # Every failure becomes one line and an exit status.
            code, advice = _exit_code(error)
            if args.debug:
                traceback.print_exc()
            prefix = "" if code != EXIT_INTERNAL else f"{type(error).__name__}: "
            print(
                f"keras-prune {args.command}: error: {prefix}{_one_line(error)}{advice}",
                file=sys.stderr,
            )
            return code


if __name__ == "__main__":
    sys.exit(main())
