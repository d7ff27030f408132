"""Automated compression benchmark: does the search beat uniform channel pruning, does the
sensitivity allocation beat uniform sparsity, and how good is the latency table?

Measured in one run, printed side by side:

1. Digits CNN (sklearn digits, 8x8): `kp.auto.search` over channel sparsities per group
   (accuracy after a one-epoch fine-tune vs LiteRT latency from the lookup table), against
   uniform 50% channel pruning. Two rows are picked from the front: the most accurate point no
   slower (by the table) than uniform 50%, and the fastest point at least as accurate (in the
   search) as uniform 50%. All three get the same final fine-tune; accuracy on the test split
   and latency measured end to end (XNNPACK, 1 thread, interleaved rounds, median [p25-p75]).
2. MobileNetV2 (alpha 1.0, 96x96x3, weights=None) on digits upscaled to 96x96 RGB, trained
   on 1137 training images; 300 more are held out to score the search's trials (the test
   split scores only the final rows). The search starts from `initial="sensitivity"`
   (uniform 25% / 50% and a greedy point at each one's latency), each trial fine-tuned one
   epoch on the 1137 images. Rows per `--references` uniform sparsity: uniform, the greedy
   start at its latency, and the two front picks; every row the same final fine-tune
   (`--mnv2-final-epochs` x `--mnv2-seeds`). The lookup table's error against the whole
   model at each channel sparsity; the unstructured sensitivity scan's time on its 53
   prunable layers (`--skip-mnv2-scan` skips it).
3. Digits CNN: one-shot unstructured pruning at 95% and 99% with the sensitivity allocation
   (`kp.auto.sensitivity(...).allocation()`) against the same sparsity in every layer, before
   and after the same fine-tune.

Run: `python benchmarks/bench_auto.py [--trials 30] [--skip-digits] [--skip-mobilenet]
[--mnv2-trials 16] [--mnv2-trial-epochs 1] [--mnv2-trial-samples N] [--mnv2-final-epochs 3]
[--mnv2-seeds 2] [--initial sensitivity|uniform] [--references 0.25 0.5] [--clock thread]
[--mnv2-budget 0.5]`. With `--mnv2-budget S` the MobileNetV2 search runs under a latency
constraint at uniform S's table latency (every trial fine-tuned is as fast or faster), and a
front point faster than uniform S is also compared with the uniform point as fast as it (is
it the uneven cut that helps, or only cutting more?).
MobileNetV2 on 2 shared cores: training 3 min, its latency table 3-13 min the first time,
the channel scan 2 min, each trial 40-60 s, each final fine-tune (3 epochs) about 2 min.
Results are cached (`~/.cache/keras_prune`) and studies kept in `--out`, so a second run is
faster.
"""

import argparse
import dataclasses
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune.export import convert as convert_lib  # noqa: E402
from keras_prune.export.targets import get_target  # noqa: E402


def digits_data(size=None):
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    if size is not None:
        images = np.repeat(np.asarray(keras.ops.image.resize(images, (size, size))), 3, axis=-1)
    split = int(0.8 * len(images))
    return (images[:split], labels[:split]), (images[split:], labels[split:])


def digits_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_cnn",
    )


def compiled(model, learning_rate=1e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def timed(files, rounds=7, runs=40, clock="wall"):
    """Median and quartiles (us) per file, rounds interleaved in one process."""
    from keras_prune.export import verify

    per_round = [
        verify.measure_latencies(files, runs=runs, rounds=1, threads=1, clock=clock)
        for _ in range(rounds)
    ]
    result = []
    for index in range(len(files)):
        values = sorted(r[index] for r in per_round)
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        result.append((statistics.median(values), quartiles[0], quartiles[2]))
    return result


def _rows_for(result, reference, sensitivity_start, clock):
    """Uniform `reference`, the greedy starting point at its latency (initial="sensitivity"),
    and the front's best-accuracy point no slower and fastest point no less accurate."""
    names = result.space.names
    uniform = next(c for c in result.candidates if all(c.sparsities[n] == reference for n in names))
    percent = f"{reference:.0%}"
    rows = [(f"uniform {percent} channels", uniform)]
    # The starting points are the first trials: uniform 25% and 50%, then one greedy point
    # per uniform one, each as cheap by the table (the slowest such point is this budget's).
    seeds = [
        c
        for c in result.candidates
        if sensitivity_start
        and 2 <= c.number < 4
        and c.values["latency"] <= uniform.values["latency"] * 1.0001
    ]
    if seeds:
        seed = max(seeds, key=lambda c: c.values["latency"])
        rows.append((f"sensitivity start at uniform {percent}", seed))
    same_latency = max(
        (c for c in result.front if c.values["latency"] <= uniform.values["latency"] * 1.0001),
        key=lambda c: c.values["accuracy"],
        default=None,
    )
    same_accuracy = min(
        (c for c in result.front if c.values["accuracy"] >= uniform.values["accuracy"]),
        key=lambda c: c.values["latency"],
        default=None,
    )
    if same_latency is not None:
        rows.append(("front: same latency, best accuracy", same_latency))
    if same_accuracy is not None:
        rows.append(("front: same accuracy, fastest", same_accuracy))
        if same_accuracy.values["latency"] < uniform.values["latency"] * 0.98:
            # Is it the uneven cut that helps, or only cutting more? Uniform at no more latency.
            even = uniform_as_fast_as(result, same_accuracy, reference, clock)
            if even is not None:
                rows.append((f"uniform {even.mean_sparsity:.1%} (as fast, measured)", even))
    return rows


def uniform_as_fast_as(result, candidate, start, clock, step=0.025):
    """The least pruned uniform point, from `start` up in steps of `step` (off the search's
    grid), whose measured latency is no more than `candidate`'s; a Candidate that was not a
    trial (number -1), or None if none is.

    Measured end to end against the candidate in the same interleaved rounds, not priced by
    the table: the claim compared is about measured latency, and the table's error differs
    between uneven and uniform cuts.
    """
    space, target = result.space, get_target("mobile")
    reference = convert_lib.convert(candidate.materialize(), target)
    value = start
    while value <= space.max_sparsity + 1e-9:
        sparsities = {name: value for name in space.names}
        data = convert_lib.convert(space.materialize(result.model, sparsities), target)
        (mine, _, _), (theirs, _, _) = timed([reference, data], clock=clock)
        print(f"uniform {value:.1%}: {theirs:.1f} us, trial {candidate.number}: {mine:.1f} us")
        if theirs <= mine:
            costs = space.costs(sparsities)
            return dataclasses.replace(
                candidate,
                number=-1,
                sparsities=sparsities,
                values={"accuracy": float("nan"), "latency": costs["latency"]},
                costs=costs,
                metrics={},
                violations=[],
                measured={},
            )
        value = round(value + step, 6)
    return None


def compare_with_uniform(
    title,
    model,
    train,
    test,
    args,
    fine_tune_epochs,
    search_kwargs,
    seeds=3,
    validation=None,
    references=(0.5,),
    budget=None,
):
    """Search, then the same final fine-tune for uniform 50% and two front points.

    `validation` (default: `test`) is what the search scores candidates on; the final rows are
    scored on `test`, so with a separate validation split the pick does not see the test set.
    `budget` (a uniform sparsity, or None) constrains the search to that uniform point's table
    latency: every trial fine-tuned is then no slower than it.
    """
    print(f"\n== {title} ==")
    start = time.perf_counter()
    table = kp.auto.profile(
        model, "mobile", sparsities=(0.25, 0.5, 0.75), runs=30, rounds=3, verbose=0
    )
    print(table.table(limit=12))
    print(f"lookup table: {time.perf_counter() - start:.0f} s")
    if budget is not None:
        from keras_prune.auto import selection
        from keras_prune.auto.pareto_search import DEFAULTS
        from keras_prune.auto.space import SearchSpace

        # The search's own space at its defaults (channels, magnitude), to price uniform S.
        max_sparsity, step = DEFAULTS["channel"]
        space = SearchSpace(
            selection.working_copy(model),
            "channel",
            None,
            max_sparsity,
            step,
            table,
            "mobile",
            kp.criteria.get("magnitude"),
        )
        limit = space.costs(space.uniform(budget))["latency"]
        search_kwargs = dict(search_kwargs, constraints=[f"latency <= {limit * 1.0001:.1f} us"])
        print(f"budget: {search_kwargs['constraints'][0]} (uniform {budget:.0%} by the table)")
    if args.plots:
        table.plot(os.path.join(args.out, f"{model.name}_bottlenecks.png"))
    start = time.perf_counter()
    result = kp.auto.search(
        model,
        test if validation is None else validation,
        objectives=["accuracy", "latency"],
        profile=table,
        storage=os.path.join(args.out, "bench_auto.journal"),
        remeasure=0,
        verbose=1,
        **search_kwargs,
    )
    print(f"search: {len(result.candidates)} trials in {time.perf_counter() - start:.0f} s")
    print(result.table())
    first = search_kwargs.get("initial", "uniform")
    print(f"every trial in order (the first ones are the starting points, initial={first!r}):")
    print(f"{'trial':>5} {'search acc':>10} {'table us':>9} {'mean sparsity':>13}")
    for candidate in result.candidates:
        mean = statistics.mean(candidate.sparsities.values())
        print(
            f"{candidate.number:>5} {candidate.values['accuracy']:>10.4f} "
            f"{candidate.values['latency']:>9.1f} {mean:>13.3f}"
        )
    if args.plots:
        result.plot(os.path.join(args.out, f"{model.name}_pareto.png"))
    rows = []
    for reference in references:
        rows += _rows_for(
            result, reference, search_kwargs.get("initial") == "sensitivity", args.clock
        )
    files, accuracies, params = [], [], []
    target = get_target("mobile")
    done = {}  # a candidate picked twice is fine-tuned once
    for _, candidate in rows:
        if candidate.number not in done:
            runs = []
            for seed in range(seeds):
                small = compiled(candidate.materialize())
                keras.utils.set_random_seed(seed + 1)
                small.fit(*train, epochs=fine_tune_epochs, batch_size=32, verbose=0)
                runs.append(small.evaluate(*test, verbose=0, return_dict=True)["accuracy"])
            done[candidate.number] = (
                (statistics.mean(runs), statistics.pstdev(runs)),
                small.count_params(),
                convert_lib.convert(small, target),
            )
        accuracy, count, data = done[candidate.number]
        accuracies.append(accuracy)
        params.append(count)
        files.append(data)
    latencies = timed(files, clock=args.clock)
    print(
        f"\nsame final fine-tune ({fine_tune_epochs} epochs, {seeds} seeds: mean +- std test "
        "accuracy) for every row; latency end to end (LiteRT XNNPACK, 1 thread, median "
        f"[p25-p75] of 7 interleaved rounds, {args.clock} clock); search acc: after the "
        "search's short fine-tune, on its validation sample"
    )
    header = (
        f"{'model':<36} {'trial':>5} {'params':>9} {'search acc':>10} {'table us':>9} "
        f"{'measured us':>20} {'test acc':>16}"
    )
    print(header)
    print("-" * len(header))
    for (label, candidate), (mean, spread), count, (median, low, high) in zip(
        rows, accuracies, params, latencies, strict=True
    ):
        print(
            f"{label:<36} {candidate.number:>5} {count:>9,} "
            f"{candidate.values['accuracy']:>10.4f} {candidate.values['latency']:>9.1f} "
            f"{f'{median:.1f} [{low:.1f}-{high:.1f}]':>20} {f'{mean:.4f} +- {spread:.4f}':>16}"
        )
    return table


def sensitivity_vs_uniform(model, train, test, args):
    print("\n== Digits CNN: sensitivity allocation vs uniform per-layer sparsity ==")
    start = time.perf_counter()
    scan = kp.auto.sensitivity(model, test, metric="accuracy", verbose=0)
    print(f"sensitivity scan: {len(scan.units)} layers x {len(scan.sparsities)} sparsities "
          f"in {time.perf_counter() - start:.1f} s")  # fmt: skip
    print(scan.table())
    if args.plots:
        scan.plot(os.path.join(args.out, "digits_sensitivity.png"))
    header = f"{'sparsity':>8} {'allocation':<12} {'one-shot acc':>13} {'after 2 epochs':>15}"
    print(header)
    print("-" * len(header))
    for sparsity in (0.95, 0.99):
        print("per-layer:", {k: round(v, 3) for k, v in scan.sparsities_for(sparsity).items()})
        for label, allocation in (("uniform", None), ("sensitivity", scan.allocation())):
            pruned = kp.prune_once(model, sparsity, allocation=allocation)
            one_shot = compiled(kp.strip(pruned)).evaluate(*test, verbose=0, return_dict=True)
            compiled(pruned)
            keras.utils.set_random_seed(1)
            pruned.fit(*train, epochs=2, batch_size=32, verbose=0)
            tuned = compiled(kp.strip(pruned)).evaluate(*test, verbose=0, return_dict=True)
            print(
                f"{sparsity:>8.2f} {label:<12} {one_shot['accuracy']:>13.4f} "
                f"{tuned['accuracy']:>15.4f}"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--mnv2-trials", type=int, default=16)
    parser.add_argument(
        "--mnv2-trial-epochs", type=int, default=1, help="each MobileNetV2 trial's fine-tune"
    )
    parser.add_argument(
        "--mnv2-trial-samples",
        type=int,
        default=None,
        help="training images each MobileNetV2 trial fine-tunes on (default: the whole fit split)",
    )
    parser.add_argument("--mnv2-final-epochs", type=int, default=3)
    parser.add_argument("--mnv2-seeds", type=int, default=2)
    parser.add_argument(
        "--mnv2-validation",
        type=int,
        default=300,
        help="training images held out to score MobileNetV2 trials (the test split is only "
        "used for the final rows)",
    )
    parser.add_argument(
        "--initial",
        default="sensitivity",
        choices=("uniform", "sensitivity"),
        help="the MobileNetV2 search's starting points (kp.auto.search(initial=...))",
    )
    parser.add_argument("--skip-mnv2-scan", action="store_true")
    parser.add_argument(
        "--mnv2-budget",
        type=float,
        default=None,
        help="MobileNetV2: search under the table latency of this uniform sparsity (e.g. 0.5): "
        "a latency constraint, so the trials fine-tuned are all as fast or faster",
    )
    parser.add_argument(
        "--references",
        type=float,
        nargs="+",
        default=[0.5],
        choices=(0.25, 0.5),
        help="MobileNetV2: the uniform sparsities (starting points) the front is compared with",
    )
    parser.add_argument(
        "--clock",
        default="thread",
        choices=("thread", "wall"),
        help="how the final rows' latency is timed (thread: the invoking thread's CPU time)",
    )
    parser.add_argument("--skip-mobilenet", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--out", default="bench_auto_out")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    if not args.skip_digits:
        digits_benchmarks(args)
    if not args.skip_mobilenet:
        mobilenet_benchmarks(args)


def digits_benchmarks(args):
    keras.utils.set_random_seed(0)
    train, test = digits_data()
    model = compiled(digits_cnn())
    model.fit(*train, epochs=10, batch_size=32, verbose=0)
    print(f"digits CNN dense test accuracy: {model.evaluate(*test, verbose=0)[1]:.4f}")
    sensitivity_vs_uniform(model, train, test, args)
    compare_with_uniform(
        "Digits CNN: search vs uniform 50% channel pruning",
        model,
        train,
        test,
        args,
        fine_tune_epochs=3,
        search_kwargs=dict(
            n_trials=args.trials,
            fine_tune_data=train,
            fine_tune_epochs=1,
            study_name=f"digits-{args.trials}",
        ),
    )


def mobilenet_benchmarks(args):
    keras.utils.set_random_seed(0)
    train, test = digits_data(96)
    held = len(train[0]) - args.mnv2_validation
    fit, validation = (train[0][:held], train[1][:held]), (train[0][held:], train[1][held:])
    mobilenet = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3),
        weights=None,
        classes=10,
        classifier_activation=None,
        name="mobilenetv2_96",
    )
    for layer in mobilenet.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Keras's 0.999 needs thousands of steps before the moving statistics are usable;
            # this benchmark trains and fine-tunes for a few hundred.
            layer.momentum = 0.9
    compiled(mobilenet, 1e-3)
    start = time.perf_counter()
    mobilenet.fit(*fit, epochs=4, batch_size=32, verbose=0)
    accuracy = mobilenet.evaluate(*test, verbose=0, return_dict=True)["accuracy"]
    print(
        f"\nMobileNetV2 96x96 on upscaled digits: test accuracy {accuracy:.4f} after 4 epochs "
        f"on {held} images ({time.perf_counter() - start:.0f} s; {len(validation[0])} held out "
        "to score the search's trials)"
    )
    trial_train = (fit[0][: args.mnv2_trial_samples], fit[1][: args.mnv2_trial_samples])
    table = compare_with_uniform(
        "MobileNetV2 96x96: search vs uniform 50% channel pruning",
        mobilenet,
        fit,
        test,
        args,
        fine_tune_epochs=args.mnv2_final_epochs,
        seeds=args.mnv2_seeds,
        validation=validation,
        references=args.references,
        budget=args.mnv2_budget,
        search_kwargs=dict(
            n_trials=args.mnv2_trials,
            fine_tune_data=trial_train,
            fine_tune_epochs=args.mnv2_trial_epochs,
            samples=len(validation[0]),
            initial=args.initial,
            study_name=(
                f"mobilenetv2-{args.mnv2_trials}-{args.initial}-e{args.mnv2_trial_epochs}"
                f"-n{len(trial_train[0])}-v{len(validation[0])}-b{args.mnv2_budget}"
            ),
        ),
    )
    if args.skip_mnv2_scan:
        return
    start = time.perf_counter()
    scan = kp.auto.sensitivity(
        mobilenet, test, sparsities=(0.5, 0.9), samples=128, cache_dir=False, verbose=0
    )
    print(
        f"\nMobileNetV2 sensitivity scan: {len(scan.units)} prunable layers x "
        f"{len(scan.sparsities)} sparsities on {scan.samples} samples in "
        f"{time.perf_counter() - start:.0f} s; the five most sensitive at 90%:"
    )
    for unit in sorted(scan.units, key=lambda u: -u["drops"][-1])[:5]:
        print(f"  {unit['name']:<28} loss +{unit['drops'][-1]:.3f}")
    print("\nlookup table vs whole model (sum of blocks, no calibration)")
    print(f"{'channels removed':>16} {'table us':>10} {'measured us':>12} {'error':>8}")
    for check in table.checks:
        print(
            f"{check['sparsity']:>16.0%} {check['table_us']:>10.1f} "
            f"{check['measured_us']:>12.1f} {100 * check['error']:>+7.1f}%"
        )


if __name__ == "__main__":
    main()
