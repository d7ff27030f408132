"""Benchmark the core's performance targets, side by side in one run.

1. Training-time overhead of pruning-aware training over the same dense model (Keras 3),
   per epoch, on the digits CNN and an FC-heavy MLP (and MobileNetV2 with --mobilenetv2):
   binary masks (target <= 1.15x) and learnable masks in both `reselect` modes (target <=
   1.3x), rounds interleaved, medians and
   the spread of the per-round ratios. (tfmot on Keras 2 measures 2.5-3x; run with --tfmot to
   add its row, measured in a subprocess with TF_USE_LEGACY_KERAS=1.)
2. Mask recomputation for a 4M-weight kernel: target <= 50 ms.
3. Whole-model mask updates, eager against compiled (`MaskEngine(compile_masks=...)`), for a
   small CNN, MobileNetV2 and ResNet50 (weights=None), per-layer and global allocation,
   interleaved repetitions (issue 13: ResNet50 <= 0.5 s per-layer, <= 1 s global); and the
   fit step with a mask update at every step against the dense step (target <= 1.5x).

    python benchmarks/bench_core.py [--epochs 6] [--tfmot] [--skip-recompute] [--mobilenetv2]
    python benchmarks/bench_core.py --section updates [--repeats 7] [--models cnn,mobilenetv2]
        [--scaling 1,4,16,64] [--epochs 6]
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_prune as kp  # noqa: E402


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype("float32")[..., None], data.target.astype("int32")


def cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def interleaved_epoch_times(models, x, y, rounds, batch_size=32, cpu=None):
    """Seconds of each epoch of each `(model, callbacks)`: `rounds` lists per model, epochs run
    in turn so that load from other processes hits every model alike (the first epoch, which
    includes tracing, is not counted). `cpu`, a list, receives the same for this process's CPU
    seconds (less sensitive to other processes than wall time)."""
    for model, _ in models:
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times = [[] for _ in models]
    if cpu is not None:
        cpu.extend([] for _ in models)
    for epoch in range(rounds + 1):
        for index, (model, callbacks) in enumerate(models):
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epoch + 1,
                initial_epoch=epoch,
                verbose=0,
                callbacks=list(callbacks),
            )
            if epoch:
                times[index].append(time.perf_counter() - start)
                if cpu is not None:
                    cpu[index].append(time.process_time() - start_cpu)
    return times


def ratio_spread(times, dense):
    """`median [p25-p75]` of the per-round ratios of `times` to the `dense` epoch of the same
    round: a load spike hits both epochs of a round, so it moves the ratio less."""
    ratios = sorted(t / d for t, d in zip(times, dense, strict=True))
    low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return f"{statistics.median(ratios):.2f}x [{low:.2f}-{high:.2f}]"


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def small_mobilenetv2():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        weights=None, input_shape=(96, 96, 3), classes=10, classifier_activation=None
    )


def learnable_rows(rounds, frequency, mobilenetv2=False):
    """Epoch seconds of dense, binary and learnable masks (both `reselect` modes) on the digits
    CNN and on an FC-heavy MLP (784-1024-1024-10, 1.8M weights, 2048 random samples), and with
    `mobilenetv2` on MobileNetV2 at 96x96 (2.2M weights, 256 random images), rounds
    interleaved. Returns `[(title, [(label, wall times, CPU times)])]`, dense first in each."""
    learnable = kp.mask_types.LearnableMask
    tables = []
    models = [
        ("digits CNN, 1797 samples", cnn, digits()),
        ("MLP 784-1024-1024-10, 2048 samples", mlp, _random_data(2048, (784,))),
    ]
    if mobilenetv2:
        models.append(
            ("MobileNetV2 96x96, 256 samples", small_mobilenetv2, _random_data(256, (96, 96, 3)))
        )
    for title, build, (x, y) in models:
        steps = int(np.ceil(len(x) / 32))
        schedule = kp.PolynomialDecay(0.0, 0.9, 0, steps * (rounds - 1), frequency=frequency)
        rows = [
            ("dense", build(), []),
            ("binary mask", kp.prune(build(), schedule=schedule, mask="binary")),
            (
                'learnable, reselect="schedule" (default)',
                kp.prune(build(), schedule=schedule, mask="learnable"),
            ),
            (
                'learnable, reselect="step"',
                kp.prune(build(), schedule=schedule, mask=learnable(reselect="step")),
            ),
        ]
        models = [(row[1], row[2] if len(row) > 2 else [kp.PruningCallback()]) for row in rows]
        cpu = []
        times = interleaved_epoch_times(models, x, y, rounds, cpu=cpu)
        tables.append(
            (title, [(row[0], *each) for row, *each in zip(rows, times, cpu, strict=True)])
        )
    return tables


def straight_through_milliseconds(rounds, steps=50):
    """CPU milliseconds of one compiled forward and backward pass through a 1024x1024 kernel
    (batch 32, TensorFlow): dense, and with a learnable mask's and a sigmoid gate's
    straight-through multiply, each written out (`masked_weight` of `LearnableMask`,
    `SigmoidGateMask`) and as the generic bracket the base class differentiates
    (`hard + (s - stop_gradient(s))`); rounds interleaved. `{label: [ms]}`."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    weight = keras.Variable(rng.normal(size=(1024, 1024)).astype("float32"))
    scores = keras.Variable(np.abs(weight.numpy()))
    hard = tf.constant((rng.random((1024, 1024)) > 0.9).astype("float32"))
    x = tf.constant(rng.normal(size=(32, 1024)).astype("float32"))
    learnable, gate = kp.mask_types.LearnableMask(), kp.mask_types.SigmoidGateMask()
    generic = kp.mask_types.MaskType.masked_weight
    variants = {
        "dense": lambda: tf.convert_to_tensor(weight),
        "learnable, bracket": lambda: generic(learnable, weight, hard, scores),
        "learnable, written out": lambda: learnable.masked_weight(weight, hard, scores),
        "sigmoid gate, bracket": lambda: generic(gate, weight, hard, scores),
        "sigmoid gate, written out": lambda: gate.masked_weight(weight, hard, scores),
    }

    def compiled(effective):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(x @ effective()))
            return tape.gradient(loss, [weight.value, scores.value])

        return step

    steps_of = {label: compiled(effective) for label, effective in variants.items()}
    times = {label: [] for label in variants}
    for round_ in range(rounds + 1):
        for label, step in steps_of.items():
            start = time.process_time()
            for _ in range(steps):
                gradients = step()
            ops.convert_to_numpy(gradients[0][0, 0])
            if round_:  # the first traces
                times[label].append((time.process_time() - start) / steps * 1e3)
    return times


def _random_data(count, shape):
    rng = np.random.default_rng(0)
    return rng.random((count, *shape), dtype=np.float32), rng.integers(0, 10, count)


TFMOT_SCRIPT = r"""
import json, os, statistics, sys, time
import numpy as np, tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from sklearn.datasets import load_digits
data = load_digits()
x = (data.images / 16.0).astype("float32")[..., None]; y = data.target.astype("int32")
epochs = int(sys.argv[1])
def cnn():
    tf.random.set_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
class Timer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None): self.times = []
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): self.times.append(time.perf_counter() - self.t)
def run(model, callbacks):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    timer = Timer()
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=callbacks + [timer])
    return statistics.median(timer.times[1:])
dense = run(cnn(), [])
frequency = int(sys.argv[2])
end_step = int(sys.argv[3])
schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, 0, end_step, frequency=frequency)
pruned = tfmot.sparsity.keras.prune_low_magnitude(cnn(), pruning_schedule=schedule)
pruned_seconds = run(pruned, [tfmot.sparsity.keras.UpdatePruningStep()])
print(json.dumps({"dense": dense, "pruned": pruned_seconds}))
"""


def run_tfmot(script, *arguments):
    """Run a tfmot `script` in its own Keras 2 process: `(the JSON of its last line, None)`, or
    `(None, the last error line)` when tfmot is unavailable or fails."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, arguments)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        return None, result.stderr.strip().splitlines()[-1:]
    return json.loads(result.stdout.strip().splitlines()[-1]), None


def tfmot_row(epochs, frequency, end_step):
    """tfmot's epoch seconds on the digits CNN, dense and pruned (PolynomialDecay to 0.9 at
    `end_step`), in its own Keras 2 process."""
    return run_tfmot(TFMOT_SCRIPT, epochs, frequency, end_step)


TFMOT_UPDATE_SCRIPT = r"""
import json, os, sys, time
import numpy as np
import tf_keras as keras
import tensorflow_model_optimization as tfmot
name, repeats = sys.argv[1], int(sys.argv[2])
builders = {
    "resnet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)),
    "mobilenetv2": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)),
}
schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1)
pruned = tfmot.sparsity.keras.prune_low_magnitude(builders[name](), pruning_schedule=schedule)
wrappers = [layer for layer in pruned.layers if getattr(layer, "pruning_vars", None)]
for wrapper in wrappers:
    wrapper.pruning_step.assign(1)
def update():
    # What UpdatePruningStep runs for each wrapper before a batch (eager, Keras 2).
    start = time.perf_counter()
    for wrapper in wrappers:
        wrapper.pruning_obj.conditional_mask_update()
    wrappers[-1].pruning_vars[0][1].numpy()
    return time.perf_counter() - start
update()
times = [update() for _ in range(repeats)]
masks = [mask.numpy() for wrapper in wrappers for _, mask, _ in wrapper.pruning_vars]
zeros = sum(float((mask == 0).sum()) for mask in masks) / sum(mask.size for mask in masks)
weights = sum(mask.size for mask in masks)
print(json.dumps({"seconds": times, "weights": weights, "sparsity": zeros}))
"""


def tfmot_update_seconds(name, repeats):
    """tfmot's whole-model mask update (Keras 2, its own process): `{"seconds": [...],
    "weights": n, "sparsity": s}`, or None with the error line when tfmot is unavailable."""
    return run_tfmot(TFMOT_UPDATE_SCRIPT, name, repeats)


def median_milliseconds(compute, repeats):
    compute()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ops.convert_to_numpy(ops.reshape(compute(), (-1,))[0])
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def mask_milliseconds(shape, sparsity, repeats=21):
    """Median ms of keras_prune's exact masks next to a full sort and ops.top_k."""
    weight = keras.random.normal(shape, seed=1)
    kept = kp.masks.keep_count(math.prod(shape), sparsity)
    magnitude = median_milliseconds(lambda: kp.masks.magnitude_mask(weight, sparsity), repeats)
    # Signed scores (movement, custom criteria) take the radix path with the key transform.
    signed = median_milliseconds(lambda: kp.masks.top_k_mask(weight, kept), repeats)
    flat = ops.reshape(ops.abs(weight), (-1,))
    sort = median_milliseconds(lambda: ops.sort(flat), 3)
    top_k = median_milliseconds(lambda: ops.top_k(flat, kept)[0], 3)
    return magnitude, signed, sort, top_k


UPDATE_MODELS = {
    "cnn": lambda: cnn(),
    "mobilenetv2": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3)),
    "resnet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3)),
}


def spread(times):
    """`median [min-max]` of seconds."""
    return f"{statistics.median(times):.3f} [{min(times):.3f}-{max(times):.3f}]"


def update_seconds(name, allocation, repeats):
    """Seconds per whole-model mask update, eager and compiled, interleaved on one model."""
    from keras_prune.engine.engine import MaskEngine

    pruned = kp.prune(UPDATE_MODELS[name](), schedule=kp.ConstantSparsity(0.5))
    engines = {compiled: MaskEngine(pruned, compile_masks=compiled) for compiled in (False, True)}
    last_mask = engines[True].wrappers[-1].masks[0]

    def update(compiled):
        start = time.perf_counter()
        engines[compiled].prune_to(0.5, allocation=allocation)
        ops.convert_to_numpy(last_mask)  # wait for asynchronous backends
        return time.perf_counter() - start

    first = update(True)  # traces
    if engines[True].eager_reason:
        raise RuntimeError(f"compiled update ran eagerly: {engines[True].eager_reason}")
    times = {False: [], True: []}
    for _ in range(repeats):
        for compiled in (False, True):
            times[compiled].append(update(compiled))
    weights = sum(math.prod(t.variable.shape) for w in engines[True].wrappers for t in w.targets)
    return weights, times[False], times[True], first


STEP_ROWS = [
    (f"{allocation}, {'compiled' if compiled else 'eager'} updates", allocation, compiled)
    for allocation in ("per_layer", "auto")
    for compiled in (False, True)
]


def step_seconds(rounds):
    """Seconds of each fit epoch of the digits CNN: dense, and pruned with a mask update at
    every step (per-layer and the default global allocation, eager and compiled), epochs
    interleaved. Returns steps per epoch, then wall and CPU seconds per epoch: one list for
    dense first, then one per `STEP_ROWS`."""
    from keras_prune.engine.engine import engine_for

    x, y = digits()
    schedule = kp.PolynomialDecay(0.0, 0.9, 0, 10_000, frequency=1)
    models = []
    for _, allocation, compiled in STEP_ROWS:
        pruned = kp.prune(cnn(), schedule=schedule, allocation=allocation)
        engine_for(pruned).compile_masks = compiled
        models.append((pruned, [kp.PruningCallback()]))
    cpu = []
    wall = interleaved_epoch_times([(cnn(), []), *models], x, y, rounds, cpu=cpu)
    return int(np.ceil(len(x) / 32)), wall, cpu


def scaling_seconds(millions, repeats):
    """Compiled whole-model mask update of one Dense kernel of `millions` x 2**20 weights:
    `{allocation: [seconds]}`, allocations interleaved."""
    from keras_prune.engine.engine import MaskEngine

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(millions * 1024)])
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5))
    engine = MaskEngine(pruned, compile_masks=True)
    mask = engine.wrappers[0].masks[0]
    allocations = {"per_layer": "per_layer", "global": kp.allocation.GlobalAllocation()}
    times = {label: [] for label in allocations}
    for repeat in range(repeats + 1):
        for label, allocation in allocations.items():
            start = time.perf_counter()
            engine.prune_to(0.5, allocation=allocation)
            ops.convert_to_numpy(mask[0, 0])
            if repeat:  # the first traces
                times[label].append(time.perf_counter() - start)
    return times


MEMORY_SCRIPT = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
import keras_prune as kp
variant, width, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keras.utils.set_random_seed(0)
model = keras.Sequential(
    [keras.Input((width,))] + [keras.layers.Dense(width) for _ in range(layers)]
)
callbacks = []
if variant != "dense":
    model = kp.prune(model, schedule=kp.ConstantSparsity(0.9, 0, frequency=1), allocation=variant)
    callbacks = [kp.PruningCallback()]
model.compile("adam", "mse")
x = np.random.rand(64, width).astype("float32")
model.fit(x, x, batch_size=32, epochs=2, verbose=0, callbacks=callbacks)
# VmHWM, not ru_maxrss: the latter keeps the high-water mark of the parent forked before exec.
status = open("/proc/self/status").read().splitlines()
peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
print(json.dumps({"params": model.count_params(), "peak_mb": peak_kb / 1024}))
"""


def memory_rows(width, layers, rounds):
    """Peak RSS (MB) of `fit` on a `layers` x Dense(`width`) MLP, dense and pruned (binary
    masks, a mask update at every step; the default allocation and per layer), each in a
    fresh process, rounds interleaved."""
    peaks = {"dense": [], "auto": [], "per_layer": []}
    params = {}
    for _ in range(rounds):
        for variant in peaks:
            result = subprocess.run(
                [sys.executable, "-c", MEMORY_SCRIPT, variant, str(width), str(layers)],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(result.stdout.strip().splitlines()[-1])
            peaks[variant].append(row["peak_mb"])
            params[variant] = row["params"]
    return params, peaks


def updates_section(args):
    print(
        f"\nWhole-model mask update, backend {keras.backend.backend()}: seconds, median "
        f"[min-max] of {args.repeats} interleaved repetitions; first = the compiled update that "
        "traces"
    )
    header = (
        f"{'model':<13}{'allocation':<11}{'weights':>9}  {'eager s':<24}{'compiled s':<24}"
        f"{'eager/compiled':>15}{'first s':>9}"
    )
    print(header)
    allocations = {"per_layer": "per_layer", "global": kp.allocation.GlobalAllocation()}
    for name in filter(None, args.models.split(",")):
        for label, allocation in allocations.items():
            weights, eager, compiled, first = update_seconds(name, allocation, args.repeats)
            ratio = statistics.median(eager) / statistics.median(compiled)
            print(
                f"{name:<13}{label:<11}{weights / 1e6:>8.2f}M  {spread(eager):<24}"
                f"{spread(compiled):<24}{ratio:>14.1f}x{first:>9.1f}",
                flush=True,
            )
        if args.tfmot and name in ("resnet50", "mobilenetv2"):
            result, error = tfmot_update_seconds(name, args.repeats)
            if result is None:
                print(f"{name:<13}{'tfmot':<11}unavailable: {error}")
            else:
                # Its own process (Keras 2), run after the keras_prune rows: not interleaved.
                print(
                    f"{name:<13}{'tfmot':<11}{result['weights'] / 1e6:>8.2f}M  "
                    f"{spread(result['seconds']):<24}{'(eager only, Keras 2)':<24}"
                    f"{'':>15}{'':>9}   sparsity {result['sparsity']:.3f}",
                    flush=True,
                )
    print("target (issue 13): ResNet50 <= 0.5 s per-layer, <= 1 s global")
    if args.scaling:
        print(
            f"\nScaling: compiled update of one Dense kernel, seconds median [min-max] of "
            f"{args.repeats}; ms per million weights should stay flat (linear scaling)"
        )
        print(f"{'weights':>9}  {'per_layer s':<24}{'ms/M':>7}  {'global s':<24}{'ms/M':>7}")
        for millions in (int(m) for m in args.scaling.split(",")):
            times = scaling_seconds(millions, args.repeats)
            cells = "".join(
                f"{spread(times[label]):<24}"
                f"{statistics.median(times[label]) * 1e3 / (millions * 1.048576):>7.1f}  "
                for label in ("per_layer", "global")
            )
            print(f"{millions * 1.048576:>8.1f}M  {cells}", flush=True)
    if args.memory_rounds:
        params, peaks = memory_rows(4096, 3, args.memory_rounds)
        print(
            f"\nPeak RSS of fit (Adam, 2 epochs of 2 steps), {params['dense'] / 1e6:.1f}M "
            f"parameters (3 x Dense(4096)), fresh process each, median [min-max] of "
            f"{args.memory_rounds}"
        )
        for variant, values in peaks.items():
            ratio = statistics.median(values) / statistics.median(peaks["dense"])
            print(
                f"{variant:<10}{statistics.median(values):>9.0f} MB  "
                f"[{min(values):.0f}-{max(values):.0f}]  {ratio:.2f}x"
            )
        print("target (issue 13): pruned <= 1.3x dense (auto = the default, global allocation)")
    if args.epochs:
        steps, wall, cpu = step_seconds(args.epochs)
        print(
            f"\nFit with a mask update at every step (digits CNN, {steps} steps/epoch, median "
            f"of {args.epochs} interleaved epochs; allocation auto = the default, global). The "
            "ratios are per round, to the dense epoch of the same round; CPU time moves less "
            "with the load of other processes than wall time"
        )
        print(
            f"{'model':<34}{'ms/step':>10}{'vs dense, per round [p25-p75]':>32}"
            f"{'CPU s vs dense':>24}"
        )
        labels = ["dense"] + [label for label, _, _ in STEP_ROWS]
        for label, times, cpu_times in zip(labels, wall, cpu, strict=True):
            print(
                f"{label:<34}{statistics.median(times) / steps * 1e3:>10.1f}"
                f"{ratio_spread(times, wall[0]):>32}{ratio_spread(cpu_times, cpu[0]):>24}"
            )
        if args.tfmot:
            # tfmot against its own Keras 2 dense model, in its own process: not interleaved.
            result, error = tfmot_row(args.epochs, 1, 10_000)
            if result is None:
                print(f"{'tfmot (unavailable)':<34}{error}")
            else:
                for label, seconds in (
                    ("tfmot dense (Keras 2)", result["dense"]),
                    ("tfmot, UpdatePruningStep", result["pruned"]),
                ):
                    print(
                        f"{label:<34}{seconds / steps * 1e3:>10.1f}"
                        f"{seconds / result['dense']:>9.2f}x"
                    )
        print("target (issue 13): <= 1.5x the dense step")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--tfmot", action="store_true", help="add tfmot's Keras 2 rows")
    parser.add_argument("--frequency", type=int, default=100, help="steps between mask updates")
    parser.add_argument("--section", choices=["training", "updates"], default="training")
    parser.add_argument(
        "--mobilenetv2",
        action="store_true",
        help="for --section training: add MobileNetV2 (96x96) to the training overhead tables",
    )
    parser.add_argument(
        "--skip-recompute",
        action="store_true",
        help="for --section training: skip the mask recomputation table",
    )
    parser.add_argument("--repeats", type=int, default=7, help="mask updates timed per model")
    parser.add_argument(
        "--models", default="cnn,mobilenetv2,resnet50", help="for --section updates"
    )
    parser.add_argument(
        "--scaling",
        default="1,4,16,64",
        help="for --section updates: kernel sizes in millions of weights ('' skips)",
    )
    parser.add_argument(
        "--memory-rounds", type=int, default=3, help="for --section updates (0 skips)"
    )
    args = parser.parse_args()
    if args.section == "updates":
        updates_section(args)
        return
    tables = learnable_rows(args.epochs, args.frequency, args.mobilenetv2)
    for title, rows in tables:
        print(
            f"\nTraining overhead per epoch ({title}, batch 32, mask update every "
            f"{args.frequency} steps, {args.epochs} interleaved rounds)"
        )
        print(
            f"{'model':<42}{'s/epoch [min-max]':>24}{'vs dense, per round [p25-p75]':>32}"
            f"{'CPU s vs dense':>24}"
        )
        _, dense, dense_cpu = rows[0]
        for label, times, cpu in rows:
            print(
                f"{label:<42}{spread(times):>24}{ratio_spread(times, dense):>32}"
                f"{ratio_spread(cpu, dense_cpu):>24}"
            )
    print("targets: binary mask <= 1.15x, learnable mask <= 1.3x (issue 13)")
    if keras.backend.backend() == "tensorflow":
        times = straight_through_milliseconds(max(args.epochs, 7))
        print(
            "\nOne compiled forward and backward pass through a 1024x1024 kernel, batch 32 (CPU "
            "ms, median [min-max] of interleaved rounds of 50 steps)"
        )
        dense = statistics.median(times["dense"])
        for label, each in times.items():
            extra = statistics.median(each) - dense
            print(f"{label:<34}{spread(each):>24}{'mask adds':>12}{extra:>7.2f} ms")
    if args.tfmot:
        steps = int(np.ceil(len(digits()[0]) / 32))  # the same schedule as the rows above
        result, error = tfmot_row(args.epochs, args.frequency, steps * (args.epochs - 1))
        if result is None:
            print(f"tfmot (unavailable: {error})")
        else:
            print(
                f"tfmot (Keras 2, digits CNN): dense {result['dense']:.3f} s/epoch, pruned "
                f"{result['pruned']:.3f} s/epoch, {result['pruned'] / result['dense']:.2f}x"
            )

    if args.skip_recompute:
        return
    print("\nMask recomputation (exact count, median of 21 calls)")
    print(
        f"{'kernel':<16}{'magnitude ms':>14}{'signed ms':>12}{'ops.sort ms':>13}"
        f"{'ops.top_k ms':>14}"
    )
    for shape in [(2048, 2048), (3, 3, 512, 512)]:
        magnitude, signed, sort, top_k = mask_milliseconds(shape, 0.9)
        print(
            f"{'x'.join(map(str, shape)):<16}{magnitude:>14.1f}{signed:>12.1f}{sort:>13.1f}"
            f"{top_k:>14.1f}"
        )
    print("target: <= 50 ms for a 4M-weight kernel (magnitude)")


if __name__ == "__main__":
    main()
