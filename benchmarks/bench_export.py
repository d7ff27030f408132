"""Dense vs 90%-sparse digits CNN, exported for every target and measured in one run.

    python benchmarks/bench_export.py [--epochs 15] [--prune-epochs 10]

The CNN (sklearn's bundled 8x8 digits) is deliberately Dense-heavy: two small convolutions, then
Flatten (2048 features) into Dense(256), so ~99% of the weights sit in FULLY_CONNECTED layers.
That is where the converter's sparse encoding pays off and where LiteRT has sparse kernels:
the Dense layers are pruned in 1x16 blocks along the input axis of TFLite's [out, in] layout
(1x16 blocks are also 1x4 blocks, so the float file keeps the float 1x4 sparse kernel and the
int8 file the int8 1x16 one). The convolutions stay dense: they are 1% of the weights, and
TFLite would only DENSIFY them at load. For each target the table shows file and gzip size,
the ratio to the dense float file, LiteRT latency with and without XNNPACK, TFLM's arena and
the test accuracy computed from the interpreter's outputs (TFLM's for "mcu").

    python benchmarks/bench_export.py --storage [--runs 50 --rounds 7]

prints the second table instead: sparse-encoded vs dense storage vs what
`to_tflite(objective="latency")` chose (per tensor), for an MLP 784-1024-1024-10 pruned to 90%
(unstructured, 1x4 blocks, 1x16 blocks) and a CNN mixing both kinds of weights (convolutions
pruned unstructured, which only DENSIFY, and fully-connected layers in 1x4 blocks, which run
sparse: the exporter stores the first dense and the second sparse), float and int8, timed on
LiteRT with XNNPACK (1 thread), the three files (and a second copy of the dense file, an A/A
check of the noise) interleaved in one process: medians of the per-round medians and their
min-max spread.

    python benchmarks/bench_export.py --mobile [--runs 20 --rounds 7]

prints the third table: the `granularity="mobile"` preset (1x4 blocks on fully-connected
weights, channels on convolutions) at 50% and 75% on `build_mixed_cnn()` (a small CNN with a
2-layer fully-connected head) and MobileNetV2 (96x96, weights=None, its 1000-class classifier):
`kp.prune_once` -> `kp.strip` -> `kp.shrink(round_to=4)` ->
`kp.export.to_tflite(target="mobile")`, timed against the dense model's export on LiteRT with
XNNPACK, 1 thread, interleaved as above, and beside `granularity="channel"` at the same
sparsity (channels everywhere, fully-connected neurons included: no sparse kernel needed).
"""

import argparse
import dataclasses
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_prune as kp  # noqa: E402

SPARSITY = 0.9
TARGETS = ("mobile", "mobile-int8", "mcu")


def digits():
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return train_test_split(x, data.target, test_size=0.3, random_state=0, stratify=data.target)


def build_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digits_cnn",
    )


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train(x_train, y_train, epochs, prune_epochs):
    keras.utils.set_random_seed(0)
    dense = build_cnn()
    compile_model(dense, 1e-3)
    dense.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    steps_per_epoch = -(-len(x_train) // 32)
    end_step = steps_per_epoch * max(prune_epochs - 2, 1)
    pruned = kp.prune(
        dense,
        schedule=kp.PolynomialDecay(
            0.0, SPARSITY, begin_step=0, end_step=end_step, frequency=steps_per_epoch // 2
        ),
        granularity=kp.granularity.Block((1, 16)),
        filters="dense",
    )
    compile_model(pruned, 5e-4)
    pruned.fit(
        x_train,
        y_train,
        epochs=prune_epochs,
        batch_size=32,
        verbose=0,
        callbacks=[kp.PruningCallback()],
    )
    return dense, kp.strip(pruned)


def keras_accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def interpreter_accuracy(result, x, y):
    runtime = "tflm" if result.target == "mcu" else "litert"
    outputs = kp.export.predict(result.path, x, runtime=runtime, arena_bytes=result.arena_bytes)
    return float(np.mean(np.argmax(outputs, axis=1) == y))


STORAGE_GRANULARITIES = {
    "unstructured": "unstructured",
    "1x4 blocks": kp.granularity.Block((1, 4)),
    "1x16 blocks": kp.granularity.Block((1, 16)),
}


def build_mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="mlp",
    )


def build_mixed_cnn():
    """Convolutions and fully-connected layers with comparable work (about 3.9M and 3.4M MACs)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="mixed_cnn",
    )


def prune_mixed(model):
    """Fully-connected kernels in 1x4 blocks, convolution kernels unstructured, all at 90%."""
    pruned = kp.strip(kp.prune_once(model, SPARSITY, granularity=kp.granularity.Block((1, 4))))
    for layer in pruned.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), SPARSITY)] = 0.0
            layer.set_weights([kernel, bias])
    return pruned


def build_mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None)


def _shape_summary(original, shrunk):
    """Channels kept by the convolutions, and the fully-connected weights' sparsity."""
    convs = [
        (layer, shrunk.get_layer(layer.name))
        for layer in original.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
    ]
    kept = sum(
        b.kernel.shape[-1] if isinstance(b, keras.layers.Conv2D) else b.kernel.shape[-2]
        for _, b in convs
    )
    total = sum(
        a.kernel.shape[-1] if isinstance(a, keras.layers.Conv2D) else a.kernel.shape[-2]
        for a, _ in convs
    )
    dense = [np.asarray(b.kernel) for b in shrunk.layers if isinstance(b, keras.layers.Dense)]
    zeros = sum(int((k == 0).sum()) for k in dense) / sum(k.size for k in dense)
    return f"{kept}/{total}", zeros


def _shrunk(model, sparsity, granularity):
    return kp.shrink(kp.strip(kp.prune_once(model, sparsity, granularity=granularity)), round_to=4)


def mobile_table(runs, rounds):
    """The "mobile" granularity preset (and "channel" everywhere, for comparison), exported and
    timed against the dense export."""
    from keras_prune.export import verify

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:

        def export(model, name, data, latency_runs):
            path = os.path.join(workdir, f"{name}.tflite")
            return kp.export.to_tflite(
                model, path, target="mobile", verification_data=data, latency_runs=latency_runs
            )

        for label, build in (("CNN fc+conv", build_mixed_cnn), ("MobileNetV2 96", build_mobilenet)):
            model = build()
            shape = tuple(model.inputs[0].shape[1:])
            data = rng.standard_normal((32, *shape)).astype("float32")
            dense = export(model, f"{label}-dense", data, 0)
            for sparsity in (0.5, 0.75):
                small = _shrunk(model, sparsity, "mobile")
                mobile = export(small, f"{label}-{sparsity}-mobile", data, runs)
                channel = export(_shrunk(model, sparsity, "channel"), f"{label}-c", data, 0)
                files = [dense.path, mobile.path, channel.path, dense.path]
                timed = verify.latency_rounds(files, runs=runs, warmup=5, rounds=rounds)
                stats = [_spread(r) for r in timed]
                channels, fc_zeros = _shape_summary(model, small)
                rows.append((label, sparsity, dense, mobile, stats, channels, fc_zeros))
    header = (
        f"{'model':<15} {'sparsity':>8} {'conv channels':>14} {'FC zeros':>8} "
        f"{'dense B':>10} {'mobile B':>10} {'dense us':>15} {'mobile us':>15} "
        f"{'channel us':>15} {'mobile/dense':>12} {'channel/dense':>13} {'A/A':>5} "
        f"{'storage':>7} {'sparse weights':>14}"
    )
    print()
    print(
        'granularity="mobile" (or "channel") -> prune_once -> strip -> shrink(round_to=4) -> '
        'to_tflite(target="mobile") '
        f"vs the dense export; LiteRT + XNNPACK, 1 thread; medians of {rounds} interleaved "
        f"rounds of {runs} invocations (+-: half the min-max spread of the rounds)"
    )
    print(header)
    print("-" * len(header))

    def cell(median, spread):
        return f"{median:>8,.1f} +-{spread:>3.0f}%"

    for label, sparsity, dense, mobile, stats, channels, fc_zeros in rows:
        sparse_weights = [t for t in mobile.tensor_storage if t["storage"] == "sparse"]
        dense_us = stats[0][0]
        print(
            f"{label:<15} {sparsity:>8.0%} {channels:>14} {fc_zeros:>8.0%} "
            f"{dense.file_bytes:>10,} {mobile.file_bytes:>10,} "
            f"{cell(*stats[0])} {cell(*stats[1])} {cell(*stats[2])} "
            f"{stats[1][0] / dense_us:>12.2f} {stats[2][0] / dense_us:>13.2f} "
            f"{stats[3][0] / dense_us:>5.2f} {mobile.storage:>7} "
            f"{len(sparse_weights)} of {len(mobile.tensor_storage)}"
        )


def _spread(rounds):
    median = float(np.median(rounds))
    return median, 100 * (max(rounds) - min(rounds)) / 2 / median


def storage_table(runs, rounds):
    """Sparse file vs dense file vs `to_tflite`'s choice, timed interleaved with XNNPACK."""
    from keras_prune.export import convert, storage, verify

    rng = np.random.default_rng(0)
    mlp = build_mlp()
    cases = [
        (label, kp.strip(kp.prune_once(mlp, SPARSITY, granularity=granularity)))
        for label, granularity in STORAGE_GRANULARITIES.items()
    ]
    cases.append(("CNN fc1x4+conv", prune_mixed(build_mixed_cnn())))
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for label, pruned in cases:
            shape = tuple(pruned.inputs[0].shape[1:])
            calibration = rng.standard_normal((200, *shape)).astype("float32")
            for target_name in ("mobile", "mobile-int8"):
                target = kp.export.get_target(target_name)
                sparse = convert.convert(pruned, target, calibration)
                dense = convert.convert(
                    pruned, dataclasses.replace(target, sparse_encoding=False), calibration
                )
                result = kp.export.to_tflite(
                    pruned,
                    os.path.join(workdir, f"{target_name}-{label.split()[0]}.tflite"),
                    target=target_name,
                    calibration_data=calibration,
                    latency_runs=runs,
                )
                files = {"dense": dense, "chosen": result.path, "dense A/A": dense}
                try:
                    verify.latency_rounds(
                        [sparse], runs=1, warmup=0, rounds=1
                    )  # XNNPACK refuses some int8 files: time them without it below
                    files = {"sparse": sparse, **files}
                except verify.XnnpackRefusedError:
                    pass
                timed = verify.latency_rounds(
                    list(files.values()), runs=runs, warmup=5, rounds=rounds
                )
                stats = {name: _spread(r) for name, r in zip(files, timed, strict=True)}
                rows.append((label, target_name, len(sparse), len(dense), result, stats))
    header = (
        f"{'granularity':<15} {'target':<12} {'sparse B':>10} {'dense B':>10} {'chosen B':>10} "
        f"{'sparse us':>15} {'dense us':>15} {'chosen us':>15} {'sparse/dense':>12} "
        f"{'A/A':>6} {'chosen':>7} {'chosen/dense':>12} {'sparse weights':>14}"
    )
    print()
    print(
        "MLP 784-1024-1024-10 and build_mixed_cnn(), 90% sparse, "
        f"LiteRT + XNNPACK, 1 thread; medians of {rounds} "
        f"interleaved rounds of {runs} invocations (+-: half the min-max spread of the rounds); "
        f"to_tflite keeps sparse when sparse <= dense * {1 + storage.NOISE_MARGIN:.2f}"
    )
    print(header)
    print("-" * len(header))

    def cell(stats, name):
        if name not in stats:
            return f"{'refused':>15}"
        median, spread = stats[name]
        return f"{median:>8,.1f} +-{spread:>3.0f}%"

    for label, target_name, sparse_bytes, dense_bytes, result, stats in rows:
        sparse_weights = [t for t in result.tensor_storage if t["storage"] == "sparse"]
        kept = f"{len(sparse_weights)} of {len(result.tensor_storage)}"
        dense = stats["dense"][0]
        ratio = f"{stats['sparse'][0] / dense:>12.2f}" if "sparse" in stats else f"{'-':>12}"
        print(
            f"{label:<15} {target_name:<12} {sparse_bytes:>10,} {dense_bytes:>10,} "
            f"{result.file_bytes:>10,} "
            f"{cell(stats, 'sparse')} {cell(stats, 'dense')} {cell(stats, 'chosen')} {ratio} "
            f"{stats['dense A/A'][0] / dense:>6.2f} {result.storage:>7} "
            f"{stats['chosen'][0] / dense:>12.2f} {kept:>14}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15, help="dense training epochs")
    parser.add_argument("--prune-epochs", type=int, default=10, help="pruning epochs")
    parser.add_argument(
        "--storage", action="store_true", help="sparse vs dense storage table (MLP) only"
    )
    parser.add_argument(
        "--mobile", action="store_true", help='the granularity="mobile" preset table only'
    )
    parser.add_argument("--runs", type=int, default=50, help="invocations per round (--storage)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (--storage)")
    args = parser.parse_args()
    if args.storage:
        storage_table(args.runs, args.rounds)
        return
    if args.mobile:
        mobile_table(args.runs, args.rounds)
        return

    x_train, x_test, y_train, y_test = digits()
    dense, pruned = train(x_train, y_train, args.epochs, args.prune_epochs)
    kp.summary(pruned)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for label, model in (("dense", dense), ("pruned 90%", pruned)):
            accuracy = keras_accuracy(model, x_test, y_test)
            for target in TARGETS:
                result = kp.export.to_tflite(
                    model,
                    os.path.join(workdir, label.split()[0], target, "model.tflite"),
                    target=target,
                    calibration_data=x_train[:300],
                    verification_data=x_test[:64],
                    objective="size",  # this table is about size: the sparse-encoded files
                )
                rows.append(
                    {
                        "model": label,
                        "target": target,
                        "result": result,
                        "keras_accuracy": accuracy,
                        "interpreter_accuracy": interpreter_accuracy(result, x_test, y_test),
                    }
                )

    reference = next(
        r["result"].file_bytes for r in rows if r["model"] == "dense" and r["target"] == "mobile"
    )
    header = (
        f"{'model':<11} {'target':<12} {'file':>10} {'gzip':>10} {'x dense':>8} "
        f"{'XNNPACK':>10} {'built-in':>10} {'arena':>8} {'sparse':>6} "
        f"{'Keras acc':>9} {'interp acc':>10}"
    )
    print()
    print(
        f"digits CNN, test split of {len(y_test)} images; sizes in bytes, latency in us "
        "(LiteRT, 1 thread, median of 50); 'x dense' = file / dense float file"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        result = row["result"]
        arena = "-" if result.arena_bytes is None else f"{result.arena_bytes:,}"
        print(
            f"{row['model']:<11} {row['target']:<12} {result.file_bytes:>10,} "
            f"{result.gzip_bytes:>10,} {result.file_bytes / reference:>8.3f} "
            f"{result.latency_us['xnnpack']:>10.1f} {result.latency_us['builtin']:>10.1f} "
            f"{arena:>8} {len(result.sparse_tensors):>6} "
            f"{100 * row['keras_accuracy']:>8.2f}% {100 * row['interpreter_accuracy']:>9.2f}%"
        )

    def find(model, target):
        return next(r for r in rows if r["model"] == model and r["target"] == target)

    float_ratio = find("pruned 90%", "mobile")["result"].file_bytes / reference
    int8_ratio = find("pruned 90%", "mobile-int8")["result"].file_bytes / reference
    worst_drop = max(100 * (r["keras_accuracy"] - r["interpreter_accuracy"]) for r in rows)
    print()
    print(
        f"pruned mobile float file / dense float file = {float_ratio:.3f} (target <= 0.16): "
        f"{'met' if float_ratio <= 0.16 else 'NOT met'}"
    )
    print(
        f"pruned mobile-int8 file / dense float file  = {int8_ratio:.3f} (target <= 0.05): "
        f"{'met' if int8_ratio <= 0.05 else 'NOT met'}"
    )
    print(
        f"largest accuracy drop Keras -> interpreter  = {worst_drop:.2f} points "
        f"(target <= 1): {'met' if worst_drop <= 1 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
