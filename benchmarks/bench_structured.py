"""Structured surgery benchmark: is the shrunk model really smaller, faster and still right?

Measured in one run, printed side by side:

1. MobileNetV2 (alpha 1.0, 96x96x3, weights=None) with 50% of every prunable channel group
   removed (`kp.prune_channels`), against the dense model and MobileNetV2 alpha=0.5:
   parameters, MACs, float32 .tflite size and LiteRT latency with XNNPACK (default AUTO
   resolver, 1 thread, median of many interleaved runs), and speed-up / MACs-reduction.
2. Shrink correctness on keras.applications graphs (weights=None, random BatchNorm statistics,
   every other channel of each group zeroed): max |keras(masked) - keras(shrunk)|.
3. A digits CNN trained, pruned to half its channels and fine-tuned: accuracy, and the int8
   .tflite size and the smallest TFLM arena before / after.

Run: `python benchmarks/bench_structured.py` (about 3-5 minutes on 2 cores).
"""

import argparse
import contextlib
import io
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

import keras_prune as kp  # noqa: E402

layers = keras.layers


def to_tflite(model, int8_data=None):
    with contextlib.redirect_stdout(io.StringIO()):  # the converter lists every tensor spec
        return _convert(model, int8_data)


def _convert(model, int8_data):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8_data is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in int8_data[:200])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def latencies(flatbuffers, input_shape, rounds, runs_per_round):
    """Median latency (ms) per model; rounds interleave models so machine load hits all alike."""
    interpreters = []
    x = np.random.default_rng(0).normal(size=(1,) + input_shape).astype("float32")
    for flatbuffer in flatbuffers:
        interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        for _ in range(10):
            interpreter.invoke()
        interpreters.append(interpreter)
    samples = [[] for _ in interpreters]
    for _ in range(rounds):
        for interpreter, times in zip(interpreters, samples, strict=True):
            for _ in range(runs_per_round):
                start = time.perf_counter()
                interpreter.invoke()
                times.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(times) for times in samples], len(samples[0])


def mobilenet_section(rounds, runs_per_round):
    keras.utils.set_random_seed(0)
    dense = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=1.0, weights=None)
    half = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.5, weights=None)
    start = time.perf_counter()
    pruned = kp.prune_channels(dense, sparsity=0.5)
    prune_seconds = time.perf_counter() - start
    pruned8 = kp.prune_channels(dense, sparsity=0.5, round_to=8)
    rows = [
        ("MobileNetV2 a=1.0 dense", dense),
        ("  50% channels pruned", pruned),
        ("  50% pruned, round_to=8", pruned8),
        ("MobileNetV2 a=0.5 (ref)", half),
    ]
    flatbuffers = [to_tflite(model) for _, model in rows]
    medians, count = latencies(flatbuffers, (96, 96, 3), rounds, runs_per_round)
    base = kp.reporting.macs.count(dense)
    print(
        f"\n== MobileNetV2 96x96, LiteRT float32, XNNPACK 1 thread, median of {count} runs ==\n"
        f"(prune_channels + shrink took {prune_seconds:.1f} s)"
    )
    header = (
        f"{'model':<26} {'params':>10} {'MACs':>11} {'MACs red.':>9} {'tflite KB':>9} "
        f"{'ms':>7} {'speed-up':>8} {'speed/MACs':>10}"
    )
    print(header + "\n" + "-" * len(header))
    for (name, model), flatbuffer, median in zip(rows, flatbuffers, medians, strict=True):
        cost = kp.reporting.macs.count(model)
        reduction = base["macs"] / cost["macs"]
        speedup = medians[0] / median
        print(
            f"{name:<26} {cost['params']:>10,} {cost['macs']:>11,} {reduction:>8.2f}x "
            f"{len(flatbuffer) / 1024:>9.0f} {median:>7.2f} {speedup:>7.2f}x "
            f"{speedup / reduction:>10.2f}"
        )


def randomize_batchnorm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(size=shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=shape).astype("float32"))
            layer.beta.assign(rng.normal(size=shape).astype("float32"))


def correctness_section():
    print("\n== shrink correctness on keras.applications (96x96, every other channel zeroed) ==")
    header = (
        f"{'model':<16} {'groups':>6} {'kept whole':>10} {'MACs before':>13} {'MACs after':>12} "
        f"{'max |diff|':>10} {'max |out|':>9} {'shrink s':>8}"
    )
    print(header + "\n" + "-" * len(header))
    x = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype("float32")
    for name, constructor in (
        ("MobileNetV2", keras.applications.MobileNetV2),
        ("ResNet50", keras.applications.ResNet50),
        ("EfficientNetB0", keras.applications.EfficientNetB0),
    ):
        model = constructor(input_shape=(96, 96, 3), weights=None, classifier_activation=None)
        randomize_batchnorm(model)
        groups = kp.graph.channel_groups(model)
        for group in groups:
            if group.prunable:
                kp.surgery.zero_group_channels(group, np.arange(0, group.size, 2))
        start = time.perf_counter()
        small = kp.shrink(model)
        seconds = time.perf_counter() - start
        reference = np.asarray(model(x))
        diff = float(np.max(np.abs(reference - np.asarray(small(x)))))
        before, after = kp.reporting.macs.count(model), kp.reporting.macs.count(small)
        print(
            f"{name:<16} {len(groups):>6} {sum(not g.prunable for g in groups):>10} "
            f"{before['macs']:>13,} {after['macs']:>12,} {diff:>10.2e} "
            f"{np.abs(reference).max():>9.2f} {seconds:>8.1f}"
        )


def digits_cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(10)(x)
    return keras.Model(inputs, outputs)


def smallest_arena(flatbuffer):
    """Smallest TFLM arena (bytes, 256-byte steps) in which the model allocates."""
    from tflite_micro.python.tflite_micro import runtime

    def fits(size):
        try:
            runtime.Interpreter.from_bytes(flatbuffer, arena_size=size)
            return True
        except Exception:  # noqa: BLE001 - TFLM reports a failed allocation as RuntimeError
            return False

    # TFLM prints every failed allocation to stderr (C level): silence it during the search.
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            low, high = 256, 1 << 20
            while high - low > 256:
                middle = (low + high) // 2
                low, high = (low, middle) if fits(middle) else (middle, high)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return high


def digits_section(epochs, finetune_epochs):
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]
    labels = data.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    split = int(0.8 * len(images))
    (x_train, y_train), (x_test, y_test) = (
        (images[:split], labels[:split]),
        (
            images[split:],
            labels[split:],
        ),
    )

    def compile_model(model, rate):
        model.compile(
            keras.optimizers.Adam(rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def accuracy(model):
        return model.evaluate(x_test, y_test, verbose=0)[1] * 100

    model = digits_cnn()
    compile_model(model, 1e-3)
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    dense_accuracy = accuracy(model)
    small = kp.prune_channels(model, sparsity=0.5)
    pruned_accuracy = accuracy_after = None
    compile_model(small, 1e-3)
    pruned_accuracy = accuracy(small)
    small.fit(x_train, y_train, epochs=finetune_epochs, batch_size=32, verbose=0)
    accuracy_after = accuracy(small)
    rows = []
    for name, net, acc in (
        ("digits CNN dense", model, dense_accuracy),
        ("half channels, fine-tuned", small, accuracy_after),
    ):
        int8 = to_tflite(net, int8_data=x_train)
        rows.append((name, kp.reporting.macs.count(net), acc, len(int8), smallest_arena(int8)))
    print(
        f"\n== digits CNN: prune_channels(sparsity=0.5) then {finetune_epochs} epochs of "
        f"fine-tuning ({epochs} epochs dense training); accuracy right after pruning, "
        f"before fine-tuning: {pruned_accuracy:.2f}% =="
    )
    header = (
        f"{'model':<26} {'params':>8} {'MACs':>9} {'test acc %':>10} {'int8 bytes':>10} "
        f"{'TFLM arena':>10}"
    )
    print(header + "\n" + "-" * len(header))
    for name, cost, acc, size, arena in rows:
        print(
            f"{name:<26} {cost['params']:>8,} {cost['macs']:>9,} {acc:>10.2f} {size:>10,} "
            f"{arena:>10,}"
        )
    print(f"accuracy change: {accuracy_after - dense_accuracy:+.2f} points")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs-per-round", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument(
        "--sections", default="mobilenet,correctness,digits", help="comma-separated subset"
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if "mobilenet" in sections:
        mobilenet_section(args.rounds, args.runs_per_round)
    if "correctness" in sections:
        correctness_section()
    if "digits" in sections:
        digits_section(args.epochs, args.finetune_epochs)


if __name__ == "__main__":
    main()
