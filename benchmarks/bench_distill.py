"""Benchmark: pruning alone vs pruning + distillation on the digits CNN, side by side.

A dense CNN (the teacher) is trained on sklearn's bundled 8x8 digits. At each sparsity copies
of it are pruned with the same schedule, seeds and number of epochs: fine-tuned on the hard
labels only, and through `keras_prune.Distiller` with the dense model as a frozen teacher, once
per distillation setting `T:alpha_start:alpha` (SoftTargets at temperature T; alpha rising
from alpha_start to alpha with the sparsity schedule). A smaller dense student trained from
scratch, with and without distillation, gives the last rows. Test accuracy is averaged over
several seeds (min-max shown); "train s" is the mean wall time of one training run.

    PYTHONPATH=. python benchmarks/bench_distill.py [--split val|test] [--seeds 5]
        [--sparsities 0.95 0.99] [--teacher-epochs 40] [--teacher-smoothing 0.1]
        [--distill 2:0.1:0.5 4:0.1:0.5:mixup] [--no-small]

Choose settings with `--split val` (80/20 split of the training images); report `--split test`.

`--defaults` runs the issue-13 comparison instead: the digits CNN of benchmarks/bench_methods.py
(dense 30 epochs, then 30 pruning epochs with `PolynomialDecay` reaching the sparsity after 20,
`kp.prune` defaults and `kp.PruningCallback()`), fine-tuned on labels alone, through
`Distiller(student, teacher)` at its current defaults, at the defaults before issue 13
(alpha=0.5, SoftTargets(temperature=4)), and at each `--candidates` setting:

    PYTHONPATH=. nice -n 5 python benchmarks/bench_distill.py --defaults [--seeds 2]
        [--first-seed 0] [--sparsities 0.95 0.99] [--candidates 1:0.5:0.5 4:0.1:0.5]
        [--allocation per_layer] [--softmax] [--candidates-only]

A candidate `T:a:a` keeps alpha constant; `T:a0:a` follows the pruning schedule from a0 to a.
Each (sparsity, seed) runs every variant before the next, from the same dense model.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_prune as kp  # noqa: E402

BATCH_SIZE = 32
# The small first conv and the classifier stay dense (as in examples/digits_demo.py): they
# hold few weights but matter most; the sparsity applies to conv2 and the hidden dense layer.
PRUNED_LAYERS = ["conv2", "^dense$"]


def load_data(split="test"):
    """`(train, evaluation)` pairs of (images, labels).

    `split="test"`: all 1437 training images, evaluated on the 360 test images.
    `split="val"`: the first 80% of the training images, evaluated on the remaining 20% (the
    validation split every choice of recipe is made on; the test images are not touched).
    """
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    split_at = int(0.8 * len(images))
    train, test = (images[:split_at], labels[:split_at]), (images[split_at:], labels[split_at:])
    if split == "test":
        return train, test
    val_at = int(0.8 * split_at)
    return (train[0][:val_at], train[1][:val_at]), (train[0][val_at:], train[1][val_at:])


TRANSFERS = ("none", "shift", "noise", "shiftnoise", "mixup")


class MixInputs(keras.layers.Layer):
    """Mixup of inputs only: each image blended with another of the batch (weight ~ U(0, 1)).

    The blends have no hard label; the teacher labels them for the distillation term.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        batch = keras.ops.shape(inputs)[0]
        partner = keras.random.shuffle(keras.ops.arange(batch), seed=self.generator)
        weight = keras.random.uniform((batch, 1, 1, 1), seed=self.generator)
        return weight * inputs + (1.0 - weight) * keras.ops.take(inputs, partner, axis=0)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def transfer_layer(name):
    """The perturbation that builds the distillation transfer set (None for "none")."""
    if name == "mixup":
        return MixInputs(name="transfer_mixup")
    layers = []
    if "shift" in name:
        # Up to one pixel in each direction on the 8x8 images, zeros shifted in.
        layers.append(keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant"))
    if "noise" in name:
        layers.append(keras.layers.GaussianNoise(0.1))
    return keras.Sequential(layers, name=f"transfer_{name}") if layers else None


def build_cnn(widths=(32, 64, 128), name="digits_cnn"):
    conv1, conv2, hidden = widths
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(conv1, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(conv2, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(hidden, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),
        ],
        name=name,
    )


def hard_label_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train_teacher(x, y, epochs, label_smoothing):
    """The dense CNN on the labels; label smoothing (one-hot targets) softens its outputs."""
    keras.utils.set_random_seed(0)
    teacher = build_cnn()
    if label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        )
        y = keras.utils.to_categorical(y, 10)
    else:
        loss = hard_label_loss()
    teacher.compile(keras.optimizers.Adam(1e-3), loss=loss)
    teacher.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0)
    return teacher


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    # The Distiller froze the teacher; clone_model copies that flag, the student must train.
    clone.trainable = True
    return clone


def parse_setting(text):
    """ "T:alpha_start:alpha[:transfer]" -> (T, alpha_start, alpha, transfer)."""
    parts = text.split(":")
    transfer = parts.pop() if len(parts) == 4 else "none"
    try:
        temperature, alpha_start, alpha = (float(v) for v in parts)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"Expected T:alpha_start:alpha[:transfer], e.g. 2:0.1:0.5:shift. Received: {text!r}"
        ) from error
    if transfer not in TRANSFERS:
        raise argparse.ArgumentTypeError(
            f"Expected the transfer to be one of {TRANSFERS}. Received: {transfer!r} in {text!r}"
        )
    return temperature, alpha_start, alpha, transfer


def describe(setting, constant_alpha=False):
    temperature, alpha_start, alpha, transfer = setting
    text = f" + distill T={temperature:g} a="
    text += f"{alpha:g}" if constant_alpha else f"{alpha_start:g}->{alpha:g}"
    return text + ("" if transfer == "none" else f" on {transfer}")


def train(model, x, y, epochs, learning_rate, teacher, setting, schedule=None):
    """Fit `model` on labels, or through a Distiller when `teacher` is given; returns seconds.

    `setting` is (temperature, alpha_start, alpha, transfer); alpha follows `schedule` when
    one is given.
    """
    callbacks = [kp.PruningCallback()] if schedule is not None else []
    if teacher is None:
        trainer = model
        trainer.compile(keras.optimizers.Adam(learning_rate), loss=hard_label_loss())
    else:
        temperature, alpha_start, alpha, transfer = setting
        if schedule is not None:
            alpha = kp.distill.DistillSchedule.following(schedule, alpha_start, alpha)
        trainer = kp.distill.Distiller(
            model,
            teacher,
            distillation_loss=kp.distill.SoftTargets(temperature=temperature),
            alpha=alpha,
            transfer=transfer_layer(transfer),
        )
        trainer.compile(keras.optimizers.Adam(learning_rate))
    start = time.perf_counter()
    trainer.fit(
        x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0, shuffle=True, callbacks=callbacks
    )
    return time.perf_counter() - start


def pruning_schedule(sparsity, steps_per_epoch, epochs):
    return kp.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=0,
        end_step=steps_per_epoch * max(epochs - 4, 1),
        frequency=max(steps_per_epoch // 2, 1),
    )


def pruned_run(teacher, sparsity, seed, setting, data, args):
    (x_train, y_train), (x_eval, y_eval) = data
    keras.utils.set_random_seed(seed)
    steps_per_epoch = int(np.ceil(len(x_train) / BATCH_SIZE))
    schedule = pruning_schedule(sparsity, steps_per_epoch, args.epochs)
    student = kp.prune(copy_of(teacher), schedule=schedule, filters=PRUNED_LAYERS)
    seconds = train(
        student,
        x_train,
        y_train,
        args.epochs,
        5e-4,
        teacher if setting else None,
        setting,
        schedule=schedule,
    )
    plain = kp.strip(student)
    nonzero = sum(int(np.count_nonzero(w)) for w in plain.get_weights())
    return accuracy(plain, x_eval, y_eval), seconds, nonzero


def small_dense_run(teacher, seed, setting, data, args):
    (x_train, y_train), (x_eval, y_eval) = data
    keras.utils.set_random_seed(seed)
    student = build_cnn(args.small_widths, name="small_cnn")
    seconds = train(
        student, x_train, y_train, args.small_epochs, 2e-3, teacher if setting else None, setting
    )
    return accuracy(student, x_eval, y_eval), seconds, student.count_params()


def summarize(results, baseline=None):
    """Mean, min, max accuracy, mean seconds, weights and the paired gain over `baseline`.

    The gain is per seed (same seed, data order and schedule for both rows): its mean, its
    standard error over seeds, and how many seeds gained / lost.
    """
    accuracies = np.array([r[0] for r in results])
    gain = None
    if baseline is not None:
        diffs = accuracies - np.array([r[0] for r in baseline])
        error = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
        gain = (diffs.mean(), error, int(np.sum(diffs > 0)), int(np.sum(diffs < 0)))
    return (
        accuracies.mean(),
        accuracies.min(),
        accuracies.max(),
        float(np.mean([r[1] for r in results])),
        results[0][2],
        gain,
    )


def format_gain(gain):
    if gain is None:
        return ""
    mean, error, wins, losses = gain
    return f"{100 * mean:+.2f} ± {100 * error:.2f} ({wins}+/{losses}-)"


# --- issue 13: the Distiller's defaults on kp.prune's default path --------------------------

DEFAULTS_DENSE_EPOCHS = 30
DEFAULTS_EPOCHS = 30
DEFAULTS_RAMP_EPOCHS = 20
# The Distiller's defaults before issue 13, spelled out (they still work as explicit arguments).
OLD_DEFAULTS = {"alpha": 0.5, "temperature": 4.0}


def defaults_variants(candidates):
    """`[(label, Distiller kwargs or None)]`: labels only, the defaults, the old defaults, the
    candidates (a function of the pruning schedule, since alpha may follow it)."""
    variants = [
        ("labels only (no distillation)", None),
        ("Distiller defaults: T=2, alpha auto", lambda schedule, softmax: {}),
        (
            "old defaults: alpha=0.5, T=4",
            lambda schedule, softmax: {
                "alpha": OLD_DEFAULTS["alpha"],
                "distillation_loss": kp.distill.SoftTargets(
                    temperature=OLD_DEFAULTS["temperature"]
                ),
            },
        ),
    ]
    for setting in candidates:
        temperature, alpha_start, alpha, transfer = setting

        def kwargs(
            schedule, softmax, temperature=temperature, alpha_start=alpha_start, alpha=alpha
        ):
            if alpha_start != alpha:
                alpha = kp.distill.DistillSchedule.following(schedule, alpha_start, alpha)
            return {
                "alpha": alpha,
                "distillation_loss": kp.distill.SoftTargets(
                    temperature=temperature, from_logits=not softmax
                ),
            }

        label = f"T={temperature:g} a=" + (
            f"{alpha:g}" if alpha_start == alpha else f"{alpha_start:g}->{alpha:g} (schedule)"
        )
        variants.append((label, kwargs))
    return variants


def softmax_model(seed):
    """bench_methods.py's CNN ending in `Dense(10, activation="softmax")`, as many Keras
    models do: the Distiller must not read its probabilities as logits."""
    from bench_methods import build_model

    config = build_model(seed=seed).get_config()
    config["layers"][-1]["config"]["activation"] = "softmax"
    keras.utils.set_random_seed(seed)
    return keras.Sequential.from_config(config)


def compile_model(model, softmax=False):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
        metrics=["accuracy"],
    )
    return model


def defaults_run(dense, sparsity, seed, make_kwargs, data, allocation="auto", softmax=False):
    """Prunes a copy of `dense` with kp.prune's defaults; returns (test accuracy, seconds)."""
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    steps_per_epoch = -(-len(x) // BATCH_SIZE)
    schedule = kp.PolynomialDecay(
        0.0, sparsity, begin_step=0, end_step=DEFAULTS_RAMP_EPOCHS * steps_per_epoch, frequency=10
    )
    student = kp.prune(copy_of(dense), schedule=schedule, allocation=allocation)
    if make_kwargs is None:
        trainer = compile_model(student, softmax)
    else:
        trainer = kp.distill.Distiller(student, dense, **make_kwargs(schedule, softmax))
        trainer.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    start = time.perf_counter()
    trainer.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=DEFAULTS_EPOCHS,
        verbose=0,
        callbacks=[kp.PruningCallback()],
    )
    seconds = time.perf_counter() - start
    return accuracy(kp.strip(student), x_test, y_test), seconds


def defaults_main(args):
    from bench_methods import build_model
    from bench_methods import load_data as load_methods_data

    x, x_test, y, y_test = load_methods_data()
    data = (x, y), (x_test, y_test)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    variants = defaults_variants(args.candidates)
    if args.candidates_only:  # to add rows to an earlier run's table (same seeds)
        variants = [variants[0]] + variants[3:]
    started = time.perf_counter()
    denses = {}
    for seed in seeds:
        dense = softmax_model(seed) if args.softmax else build_model(seed=seed)
        compile_model(dense, args.softmax)
        dense.fit(x, y, epochs=DEFAULTS_DENSE_EPOCHS, batch_size=BATCH_SIZE, verbose=0)
        denses[seed] = dense
    results = {}
    # Interleaved: every variant of one (sparsity, seed) runs before the next.
    for sparsity in args.sparsities:
        for seed in seeds:
            for label, make_kwargs in variants:
                results[(label, sparsity, seed)] = defaults_run(
                    denses[seed], sparsity, seed, make_kwargs, data, args.allocation, args.softmax
                )
                print(
                    f"  {label:<42}{sparsity:>6.0%} seed {seed}: "
                    f"{results[(label, sparsity, seed)][0]:.4f}",
                    flush=True,
                )
    print()
    print(
        f"digits CNN of bench_methods.py, {len(x)} train / {len(x_test)} test images; dense "
        f"{DEFAULTS_DENSE_EPOCHS} epochs{' (softmax output)' if args.softmax else ''} (the "
        "teacher and the student's start), then "
        f"{DEFAULTS_EPOCHS} pruning epochs, sparsity reached after {DEFAULTS_RAMP_EPOCHS}; "
        f"kp.prune(allocation={args.allocation!r}) + kp.PruningCallback(); Adam 1e-3, "
        f"batch {BATCH_SIZE}"
    )
    dense_cells = "".join(f"{accuracy(denses[seed], x_test, y_test):>10.4f}" for seed in seeds)
    columns = "".join(f"{f'seed {seed}':>10}" for seed in seeds)
    header = f"{'variant':<44}{'sparsity':>9}{columns}{'mean':>9}{'vs labels':>11}{'train s':>9}"
    print(header)
    print("-" * len(header))
    print(f"{'dense teacher':<44}{'0%':>9}{dense_cells}")
    for sparsity in args.sparsities:
        baseline = np.mean([results[(variants[0][0], sparsity, s)][0] for s in seeds])
        for label, _ in variants:
            values = [results[(label, sparsity, s)][0] for s in seeds]
            seconds = np.median([results[(label, sparsity, s)][1] for s in seeds])
            cells = "".join(f"{v:>10.4f}" for v in values)
            gain = 100 * (np.mean(values) - baseline)
            print(
                f"{label:<44}{sparsity:>9.0%}{cells}{np.mean(values):>9.4f}"
                f"{gain:>+10.2f}p{seconds:>9.1f}"
            )
    print(
        "cells: test accuracy of the stripped student; vs labels: mean difference to labels "
        "only, points; train s: median seconds per run. "
        f"Total {time.perf_counter() - started:.0f} s"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.95, 0.99])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=12, help="pruning fine-tuning epochs")
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument(
        "--teacher-smoothing", type=float, default=0.1, help="label smoothing of the teacher"
    )
    parser.add_argument("--small-epochs", type=int, default=20)
    parser.add_argument("--small-widths", type=int, nargs=3, default=[4, 8, 16])
    parser.add_argument(
        "--split",
        choices=["val", "test"],
        default="test",
        help="'val': train on 80%% of the training images, evaluate on the other 20%% (choose "
        "recipes here); 'test': train on all of them, evaluate on the test images",
    )
    parser.add_argument(
        "--distill",
        type=parse_setting,
        nargs="+",
        default=[(2.0, 0.1, 0.5, "none"), (4.0, 0.1, 0.5, "mixup")],
        help="distillation settings T:alpha_start:alpha[:transfer] for the pruned students; "
        f"transfer is one of {TRANSFERS}",
    )
    parser.add_argument(
        "--small-distill",
        type=parse_setting,
        default="4:0.9:0.9",
        help="T:alpha_start:alpha[:transfer] for the small dense student (alpha constant)",
    )
    parser.add_argument("--no-small", action="store_true", help="skip the small dense rows")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="issue 13: labels only vs the Distiller's defaults vs --candidates on kp.prune's "
        "default path (bench_methods.py's CNN); --seeds defaults to 2 here",
    )
    parser.add_argument(
        "--candidates",
        type=parse_setting,
        nargs="*",
        default=[],
        help="with --defaults: settings T:alpha_start:alpha to compare with the defaults",
    )
    parser.add_argument(
        "--allocation",
        default="auto",
        help="with --defaults: kp.prune's allocation ('auto' is its default, global with "
        "floors; 'per_layer' is tfmot's and kp.prune's default before issue 13)",
    )
    parser.add_argument(
        "--candidates-only",
        action="store_true",
        help="with --defaults: run labels only and the candidates, not the two default rows",
    )
    parser.add_argument("--first-seed", type=int, default=0, help="with --defaults: the first seed")
    parser.add_argument(
        "--softmax",
        action="store_true",
        help="with --defaults: the CNN ends in a softmax (probabilities, not logits)",
    )
    args = parser.parse_args(argv)
    if args.defaults:
        if "--seeds" not in (argv if argv is not None else sys.argv):
            args.seeds = 2
        return defaults_main(args)

    data = load_data(args.split)
    (x_train, y_train), (x_eval, y_eval) = data
    teacher = train_teacher(x_train, y_train, args.teacher_epochs, args.teacher_smoothing)
    teacher_accuracy = accuracy(teacher, x_eval, y_eval)

    seeds = range(args.seeds)
    rows = [
        (
            "dense teacher",
            teacher_accuracy,
            teacher_accuracy,
            teacher_accuracy,
            0.0,
            teacher.count_params(),
            None,
        )
    ]
    for sparsity in args.sparsities:
        baseline = None
        for setting in [None, *args.distill]:
            label = f"pruned {sparsity:.0%}" + (describe(setting) if setting else "")
            results = [pruned_run(teacher, sparsity, seed, setting, data, args) for seed in seeds]
            rows.append((label, *summarize(results, baseline)))
            baseline = baseline or results
            print(f"done: {label}", flush=True)
    if not args.no_small:
        baseline = None
        for setting in (None, args.small_distill):
            label = "small dense {}".format("x".join(map(str, args.small_widths)))
            label += describe(setting, constant_alpha=True) if setting else ""
            results = [small_dense_run(teacher, seed, setting, data, args) for seed in seeds]
            rows.append((label, *summarize(results, baseline)))
            baseline = baseline or results
            print(f"done: {label}", flush=True)

    print()
    print(
        f"digits CNN, {len(x_train)} train / {len(x_eval)} {args.split} images, {args.seeds} "
        f"seeds, {args.epochs} pruning epochs (sparsity reached after {max(args.epochs - 4, 1)}), "
        f"alpha follows the sparsity schedule; teacher: {args.teacher_epochs} epochs, label "
        f"smoothing {args.teacher_smoothing:g}"
    )
    header = f"{'model':<46}{args.split + ' acc (mean)':>15}{'min':>8}{'max':>8}"
    header += f"{'train s':>9}{'nonzero weights':>17}  {'gain vs first row, points':<26}"
    print(header)
    print("-" * len(header))
    for label, mean, low, high, seconds, weights, gain in rows:
        print(
            f"{label:<46}{mean:>15.4f}{low:>8.4f}{high:>8.4f}{seconds:>9.1f}{weights:>17,}"
            f"  {format_gain(gain)}"
        )
    print(
        "gain: mean paired difference to the first row of its group (same seeds) ± its "
        "standard error over seeds; (seeds better+/worse-)."
    )


if __name__ == "__main__":
    main()
