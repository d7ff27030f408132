"""Dynamic pruning benchmark: does a slimmable or early-exit model really save time on LiteRT?

Measured in one run, printed side by side (float32 files verified by `kp.export.to_tflite`,
LiteRT with XNNPACK, 1 thread; latencies are medians over interleaved rounds, with the
spread [min-max] of the round medians):

1. Slimmable widths 25/50/75/100% on a digits CNN (8x8) and MobileNetV2 (alpha 1.0,
   weights=None, 96x96x3 digits upsampled): test accuracy of the one slimmable model at each
   width against the same sub-network trained on its own for the same number of epochs, the
   exported file's parameters and LiteRT latency, and the width `WidthPicker` chooses for
   three latency budgets.
2. Early exit on a digits CNN and a ResNet-style model (32x32x3 digits upsampled): thresholds
   calibrated on held-out data for 0.5 and 1 point of accuracy loss; test accuracy and average
   latency per input of `StagedRunner` (stage files run one after the other until an exit is
   confident) against the full model's single file run by the same helper code, end to end.
3. Channel gating (`ChannelGate` after two blocks of the digits CNN, keeping 75/50/25% of
   the channels per input): accuracy against the average active channels, LiteRT latency of
   the gated file against the plain model, and the static model pruned from the gates'
   statistics (gates removed, lowest-scoring channels shrunk away, fine-tuned).

Run: `python benchmarks/bench_dynamic.py` (about 10-15 minutes on 2 cores);
`--quick` runs a few epochs on the digits models only (a smoke test, about 2 minutes).
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune.dynamic import runtime  # noqa: E402

warnings.filterwarnings("ignore", message="No TFLite metadata")
layers = keras.layers
WIDTHS = (0.25, 0.5, 0.75, 1.0)


# -- data and models -----------------------------------------------------------------------------


def digits(size=8, channels=1):
    """sklearn's digits: train / validation (threshold calibration) / test, optionally
    upsampled (nearest) to `size` x `size` x `channels`."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]
    if size != 8:
        images = np.repeat(np.repeat(images, size // 8, axis=1), size // 8, axis=2)
    images = np.repeat(images, channels, axis=-1)
    labels = data.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    return (
        (images[:1100], labels[:1100]),
        (images[1100:1437], labels[1100:1437]),
        (
            images[1437:],
            labels[1437:],
        ),
    )


def digits_cnn(gate_keep=None):
    """With `gate_keep`, a `ChannelGate` keeping that fraction follows each of the first two
    blocks."""
    keras.utils.set_random_seed(0)

    def gate(x, name):
        if gate_keep is None:
            return x
        regularizer = kp.regularizers.L1(1e-4)
        return kp.dynamic.ChannelGate(gate_keep, regularizer=regularizer, name=name)(x)

    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.ReLU(name="block1")(layers.BatchNormalization(name="bn1")(x))
    x = gate(x, "gate1")
    x = layers.Conv2D(64, 3, strides=2, padding="same", use_bias=False, name="conv2")(x)
    x = layers.ReLU(name="block2")(layers.BatchNormalization(name="bn2")(x))
    x = gate(x, "gate2")
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="digits_cnn")


def mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=1.0, weights=None, classes=10, classifier_activation=None
    )


def resnet_style():
    """Three stages of two residual blocks (32, 64, 128 filters) on 32x32x3."""
    keras.utils.set_random_seed(0)

    def block(x, filters, stride, name):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
            shortcut = layers.BatchNormalization()(shortcut)
        return layers.ReLU(name=name)(layers.Add()([shortcut, y]))

    inputs = keras.Input((32, 32, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(32, 3, padding="same")(inputs)))
    for stage, (filters, stride) in enumerate(((32, 1), (64, 2), (128, 2)), 1):
        x = block(x, filters, stride, f"stage{stage}_block1")
        x = block(x, filters, 1, f"stage{stage}")
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="resnet_style")


def compile_model(model, steps, rate=2e-3):
    """Adam with a cosine decay to zero over `steps`, the same for every model compared (a
    constant rate left some runs of the slimmable digits CNN 2 points lower by chance)."""
    model.compile(
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(rate, steps)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def fit(model, x, y, epochs):
    """Train, then re-estimate the BatchNorm statistics on the training inputs: with a few
    hundred steps, momentum 0.99 leaves the moving statistics far from the data's (a 32x32
    ResNet scored 0.15 on validation inputs at 0.997 training accuracy before this)."""
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    kp.dynamic.recalibrate_batchnorm(model, x)
    return model


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=128, verbose=0), 1) == y))


# -- timing --------------------------------------------------------------------------------------


def interleaved(functions, rounds, calls=1):
    """`[(median, low, high)]` per function: the median over rounds of its per-round time
    (seconds per call: the median of `calls` timed calls), and the lowest and highest round.
    Rounds interleave the functions so machine load hits all alike."""
    for function in functions:
        function()  # warm-up (XNNPACK packs weights on the first run)
    samples = [[] for _ in functions]
    for _ in range(rounds):
        for function, times in zip(functions, samples, strict=True):
            durations = []
            for _ in range(calls):
                start = time.perf_counter()
                function()
                durations.append(time.perf_counter() - start)
            times.append(statistics.median(durations))
    return [(statistics.median(t), min(t), max(t)) for t in samples]


def spread(stats, scale, digits=1):
    median, low, high = (value * scale for value in stats)
    return f"{median:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def table(title, header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, *rows]:
        cells = zip(row, widths, strict=True)
        print("  " + "  ".join(str(cell).rjust(width) for cell, width in cells), flush=True)


# -- 1. slimmable --------------------------------------------------------------------------------


def slimmable_section(name, build, data, epochs, rounds, runs, round_to, workdir):
    (x, y), _, (x_test, y_test) = data
    start = time.perf_counter()
    steps = epochs * -(-len(x) // 32)
    slim = compile_model(
        kp.dynamic.SlimmableModel(build(), widths=WIDTHS, round_to=round_to), steps
    )
    slim.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    slim_seconds = time.perf_counter() - start
    manifest = kp.dynamic.export_widths(
        slim, os.path.join(workdir, name), calibration_data=x, latency_runs=20
    )
    slim_accuracy = {
        w: accuracy(slim.at_width(w, calibration_data=x), x_test, y_test) for w in WIDTHS
    }
    alone_accuracy, alone_seconds = {}, 0.0
    for width in WIDTHS:
        # The same sub-network, freshly initialised (clone_model re-creates every layer).
        model = keras.models.clone_model(kp.shrink(build(), width=width, round_to=round_to))
        start = time.perf_counter()
        fit(compile_model(model, steps), x, y, epochs)
        alone_seconds += time.perf_counter() - start
        alone_accuracy[width] = accuracy(model, x_test, y_test)
    runners = [runtime.SignatureRunner(e["path"]) for e in manifest["widths"]]
    sample = x_test[:1]

    def timer(runner):
        name_in = next(iter(runner.inputs))
        return lambda: runner(**{name_in: sample})

    timing = interleaved([timer(r) for r in runners], rounds, calls=runs)
    full_latency = timing[-1][0]
    rows = []
    for entry, stats in zip(manifest["widths"], timing, strict=True):
        w = entry["width"]
        rows.append(
            [
                f"{w:.0%}",
                f"{slim_accuracy[w]:.3f}",
                f"{alone_accuracy[w]:.3f}",
                f"{entry['params']:,}",
                spread(stats, 1e6),
                f"{full_latency / stats[0]:.2f}x",
            ]
        )
    table(
        f"Slimmable {name}: {epochs} epochs; slimmable fit {slim_seconds:.0f} s, the four "
        f"separate fits {alone_seconds:.0f} s together",
        ["width", "slimmable acc", "alone acc", "params", "LiteRT us [spread]", "speed-up"],
        rows,
    )
    picker = kp.dynamic.WidthPicker(manifest["manifest_path"])
    measured = picker.latencies_us
    budgets = [
        0.5 * (measured[0.25] + measured[0.5]),
        0.5 * (measured[0.75] + measured[1.0]),
        1.1 * measured[1.0],
    ]
    rows = []
    for budget in budgets:
        width = picker.pick(budget)
        rows.append([f"{budget:.1f}", f"{width:.0%}", f"{measured[width]:.1f}"])
    table(
        f"WidthPicker on {name} (latencies measured by export_widths)",
        ["budget us", "chosen width", "its latency us"],
        rows,
    )


# -- 2. early exit -------------------------------------------------------------------------------


def early_exit_section(name, build, exits, head, data, epochs, rounds, workdir):
    (x, y), (x_val, y_val), (x_test, y_test) = data
    model = compile_model(
        kp.dynamic.EarlyExitModel(build(), exits=exits, distillation=True, head=head),
        epochs * -(-len(x) // 32),
    )
    fit(model, x, y, epochs)
    directory = os.path.join(workdir, f"{name}_exit")
    manifest = kp.dynamic.export_stages(model, directory, calibration_data=x, latency_runs=20)
    stage_latency = [entry["latency_us"]["xnnpack"] for entry in manifest["stages"]]
    kp.export.to_tflite(
        model.backbone, os.path.join(directory, "full.tflite"), calibration_data=x[:200]
    )
    full = runtime.SignatureRunner(os.path.join(directory, "full.tflite"))
    full_input = next(iter(full.inputs))
    probabilities = model.exit_predictions(x_val)
    configs = [("full model", None, None)]
    for drop in (0.005, 0.01):
        calibration = kp.dynamic.calibrate_threshold(
            probabilities, y_val, max_accuracy_drop=drop, stage_costs=stage_latency
        )
        runner = kp.dynamic.StagedRunner(manifest["manifest_path"], threshold=calibration.threshold)
        configs.append((f"exit, -{drop * 100:.1f} pt", calibration.threshold, runner))

    def full_predict(batch):
        return np.stack([next(iter(full(**{full_input: s[None]}).values()))[0] for s in batch])

    results = []
    for _, _, runner in configs:
        if runner is None:
            scores = full_predict(x_test)
            results.append((np.mean(np.argmax(scores, 1) == y_test), None))
        else:
            predicted, stages = runner.predict(x_test)
            fractions = np.bincount(stages, minlength=len(runner.stages)) / len(stages)
            results.append((np.mean(np.argmax(predicted, 1) == y_test), fractions))
    timed = x_test[:100]
    timing = interleaved(
        [lambda: full_predict(timed)]
        + [lambda r=runner: r.predict(timed) for _, _, runner in configs[1:]],
        rounds,
    )
    rows = []
    for (label, threshold, _), (acc, fractions), stats in zip(
        configs, results, timing, strict=True
    ):
        rows.append(
            [
                label,
                "-" if threshold is None else f"{threshold:.3f}",
                f"{acc:.3f}",
                "-" if fractions is None else " / ".join(f"{f:.0%}" for f in fractions),
                spread(stats, 1e6 / len(timed)),
                f"{timing[0][0] / stats[0]:.2f}x",
            ]
        )
    stages_text = " + ".join(f"{value:.1f}" for value in stage_latency)
    table(
        f"Early exit {name}: exits after {exits}; {epochs} epochs; stage latencies "
        f"{stages_text} us (export_stages, XNNPACK); per input, end to end through the helper",
        ["config", "threshold", "test acc", "answered by stage", "us/input [spread]", "speed-up"],
        rows,
    )


# -- 3. channel gating ---------------------------------------------------------------------------


def gating_section(data, epochs, finetune_epochs, workdir):
    (x, y), _, (x_test, y_test) = data
    steps = epochs * -(-len(x) // 32)
    plain = compile_model(digits_cnn(), steps)
    fit(plain, x, y, epochs)
    files = [os.path.join(workdir, "plain.tflite")]
    kp.export.to_tflite(plain, files[0], calibration_data=x[:200], latency_runs=0)
    rows = []
    for keep in (0.75, 0.5, 0.25):
        gated = compile_model(digits_cnn(gate_keep=keep), steps)
        fit(gated, x, y, epochs)
        scores = kp.dynamic.gate_channel_scores(gated, x)
        static = kp.dynamic.remove_gates(gated)
        kp.dynamic.prune_by_gate_scores(static, scores, 1.0 - keep)
        static = compile_model(kp.shrink(static), finetune_epochs * -(-len(x) // 32), 5e-4)
        static_before = accuracy(static, x_test, y_test)
        fit(static, x, y, finetune_epochs)
        for model, name in ((gated, f"gated{keep}"), (static, f"static{keep}")):
            files.append(os.path.join(workdir, f"{name}.tflite"))
            kp.export.to_tflite(model, files[-1], calibration_data=x[:200], latency_runs=0)
        active = np.mean([entry["active"] for entry in scores.values()])
        rows.append(
            [
                keep,
                accuracy(gated, x_test, y_test),
                active,
                static_before,
                accuracy(static, x_test, y_test),
            ]
        )
    timing = runtime.measure_interleaved(files, rounds=15, runs=50)
    plain_us = timing[0]["median"]
    table_rows = [
        [
            "no gate",
            f"{accuracy(plain, x_test, y_test):.3f}",
            "100%",
            f"{plain_us:.1f}",
            "-",
            "-",
            "-",
        ]
    ]
    for index, (keep, gated_acc, active, before, after) in enumerate(rows):
        gated_t, static_t = timing[1 + 2 * index], timing[2 + 2 * index]
        table_rows.append(
            [
                f"keep {keep:.0%}",
                f"{gated_acc:.3f}",
                f"{active:.0%}",
                f"{gated_t['median']:.1f} [{gated_t['low']:.1f}-{gated_t['high']:.1f}]",
                f"{before:.3f}",
                f"{after:.3f}",
                f"{static_t['median']:.1f} [{static_t['low']:.1f}-{static_t['high']:.1f}]",
            ]
        )
    table(
        f"Channel gating on the digits CNN ({epochs} epochs; static = gates removed, the "
        f"lowest-scoring channels pruned, shrunk, {finetune_epochs} fine-tuning epochs); LiteRT "
        "us per invoke, XNNPACK",
        ["model", "gated acc", "active ch.", "gated us", "static acc", "after ft", "static us"],
        table_rows,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only, few epochs")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mobilenet-epochs", type=int, default=2)
    parser.add_argument("--mobilenet-samples", type=int, default=640)
    parser.add_argument(
        "--sections",
        default="slim-digits,slim-mobilenet,exit-digits,exit-resnet,gating",
        help="comma-separated subset",
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if args.quick:
        sections &= {"slim-digits", "exit-digits", "gating"}
    epochs = 3 if args.quick else None
    with tempfile.TemporaryDirectory() as workdir:
        if "slim-digits" in sections:
            slimmable_section(
                "digits CNN", digits_cnn, digits(), epochs or 15, args.rounds, 200, None, workdir
            )
        if "slim-mobilenet" in sections:
            # Training MobileNetV2 at 96x96 costs about 2 s a step on 2 shared cores: a small
            # budget (the same for the slimmable model and each width trained alone).
            data = digits(96, 3)
            (x, y), val, test = data
            data = ((x[: args.mobilenet_samples], y[: args.mobilenet_samples]), val, test)
            slimmable_section(
                "MobileNetV2 96x96", mobilenet, data, args.mobilenet_epochs, args.rounds, 5, 8,
                workdir,
            )  # fmt: skip
        if "exit-digits" in sections:
            early_exit_section(
                "digits CNN", digits_cnn, ["block1"], "flatten", digits(), epochs or 15,
                args.rounds, workdir,
            )  # fmt: skip
        if "exit-resnet" in sections:
            early_exit_section(
                "ResNet-style 32x32", resnet_style, ["stage1", "stage2"], "average",
                digits(32, 3), 8, args.rounds, workdir,
            )  # fmt: skip
        if "gating" in sections:
            gating_section(digits(), epochs or 15, 2 if args.quick else 5, workdir)


if __name__ == "__main__":
    main()
