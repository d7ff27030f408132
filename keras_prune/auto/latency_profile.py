"""`profile`: per-layer cost of a model on the runtime that will run it, as a lookup table.

Each block (a convolution with its folded BatchNormalization and fused activation, or any other
op; see `keras_prune.auto.blocks`) is converted to a `.tflite` file of its own at its real input
shape and timed in the LiteRT interpreter (XNNPACK or built-in kernels, a given thread count),
at a few channel counts: `kp.prune_channels` removes each of a few `sparsities` of every
group's channels and every block of the shrunk copy is timed too. This is the latency
lookup table of NetAdapt (Yang et al. 2018) and HALP (Shen et al. 2022): the latency of any
per-group channel count is read from it by interpolating each block's latency over its
multiply-accumulates and activation traffic, and summed.

The table is checked against the whole model converted and timed end to end at each sparsity
(`Profile.error`). Block timings are cached on disk, keyed by the block's layer configs and
shapes and the runtime settings, so equal blocks (repeated stages) and later runs cost nothing.
For `target="mcu"` the files are int8 and the table holds file bytes, TensorFlow Lite Micro op
support and the whole model's smallest arena instead of latency.

The table itself and how it is read back (`Profile`, `BlockCost`, `peak_activation_bytes`) live
in `keras_prune.auto.latency_table`; the block extraction, the disk cache and the constraints in
their own modules.
"""

import functools
import platform
import time
import warnings

import keras
import numpy as np

from keras_prune.auto import blocks as blocks_lib
from keras_prune.auto import cache as cache_lib
from keras_prune.auto.latency_table import (
    TOLERANCE,
    BlockCost,
    Profile,
    activation_itemsize,
    peak_activation_bytes,
)
from keras_prune.core import validation
from keras_prune.graph import rewire

_CACHE_KIND = "latency"
_CACHE_VERSION = 1
_CALIBRATION_SAMPLES = 32


def _runtime_version():
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - the version only keys the cache
        return "unknown"


def _shrunk(model, sparsity):
    """`model` with `sparsity` of every removable group's channels removed."""
    if sparsity <= 0.0:
        return rewire.copy_model(model)
    from keras_prune.surgery.prune_channels import prune_channels

    return prune_channels(model, sparsity=sparsity)


def _convert(model, target):
    from keras_prune.export import convert as convert_lib

    calibration = None
    if target.quantize:
        rng = np.random.default_rng(0)
        calibration = [
            rng.standard_normal((_CALIBRATION_SAMPLES, *tuple(t.shape)[1:])).astype("float32")
            for t in model.inputs
        ]
        calibration = calibration[0] if len(calibration) == 1 else calibration
    return convert_lib.convert(model, target, calibration)


def profile(
    model,
    target="mobile",
    *,
    threads=1,
    xnnpack=True,
    sparsities=(0.25, 0.5, 0.75),
    runs=30,
    rounds=3,
    clock="auto",
    cache_dir=None,
    remeasure=True,
    verbose=1,
):
    """Per-block latency, file bytes (and for `mcu` TFLM arena and op support) measured on the
    target runtime, as a lookup table over channel counts.

    Args:
        model: a built Sequential or Functional model with fixed input shapes (TensorFlow
            backend: the blocks are converted to TFLite).
        target: "mobile" (float32, LiteRT), "mobile-int8" (int8, LiteRT) or "mcu" (int8,
            TFLM: bytes, arena and op support, no timing).
        threads: LiteRT's thread count.
        xnnpack: time with the XNNPACK delegate (True) or LiteRT's built-in kernels.
        sparsities: shares of every removable group's channels removed (`kp.prune_channels`)
            at which every block (and the whole model) is measured; 0 (the model as it is) is
            always included.
        runs: timed invocations per block and round (median).
        rounds: the list of files is timed this many times, interleaved.
        clock: "wall" (elapsed time), "thread" (the invoking thread's CPU time, with
            `threads=1`) or "auto" (the default: "thread" with one thread, else "wall"). On a
            machine shared with other processes, preemption inflates the wall time of the
            whole model (milliseconds) far more than that of its blocks (microseconds), and
            the check against the whole model suffers; "thread" is not inflated, and with one
            thread the interpreter runs on the invoking thread, so it is the same work.
        cache_dir: where block measurements are cached (default `~/.cache/keras_prune`;
            False: off).
        remeasure: when the table's sum misses the whole model's latency by more than the
            tolerance (25%) and part of the two came from the cache (measured in another run,
            perhaps while other jobs loaded the machine), measure every block and the whole
            model again, once, and replace those cache entries. A table measured together
            with its whole model is not measured again on later runs. False keeps what is
            cached.
        verbose: 1 shows a progress bar over the conversions.

    Returns:
        A `Profile`: `.table()`, `.plot(path)`, `.predict(model, kept)`, `.error`.

    Example:

    ```python
    table = kp.auto.profile(model, "mobile")  # 1 thread, timed by its CPU time
    print(table.table())
    table.plot("bottlenecks.png")
    ```
    """
    from keras_prune.export import convert as convert_lib
    from keras_prune.export.targets import get_target

    start = time.perf_counter()
    chosen = get_target(target)
    threads = validation.check_int("threads", threads, minimum=1)
    validation.check_bool("xnnpack", xnnpack)
    runs = validation.check_int("runs", runs, minimum=1)
    rounds = validation.check_int("rounds", rounds, minimum=1)
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: model={model!r}")
    convert_lib.check_backend()
    open_inputs = [t for t in model.inputs if None in tuple(t.shape)[1:]]
    if open_inputs:
        raise ValueError(
            "Expected fixed input shapes (latency depends on them). Received: model inputs of "
            f"shape {[tuple(t.shape) for t in open_inputs]}. Rebuild the model with "
            "keras.Input(shape=...) giving every dimension."
        )
    levels = sorted(
        {0.0} | {validation.check_sparsity(f"sparsities[{i}]", s) for i, s in enumerate(sparsities)}
    )
    validation.check_choice("clock", clock, {"auto", "wall", "thread"})
    if clock == "auto":
        clock = "thread" if threads == 1 else "wall"
    settings = [chosen.name, threads, bool(xnnpack), _runtime_version(), platform.machine()]
    if clock != "wall":
        settings.append(clock)
    validation.check_bool("remeasure", remeasure)
    measure = functools.partial(
        _measure, model, chosen=chosen, levels=levels, settings=settings, threads=threads,
        xnnpack=xnnpack, runs=runs, rounds=rounds, clock=clock, cache_dir=cache_dir,
        verbose=verbose, start=start,
    )  # fmt: skip
    result, unchecked = measure(reuse_cache=True)
    if not result.within_tolerance and unchecked and remeasure:
        stale = result.error
        result, _ = measure(reuse_cache=False)
        result.remeasured_error = stale
    if not result.within_tolerance:
        warnings.warn(
            f"The latency table's sum is {100 * result.error:.0f}% off the whole model's "
            f"measured latency (tolerance {100 * TOLERANCE:.0f}%): predictions are scaled to "
            "the measured total, but per-block shares are rough. Use more `runs`/`rounds` on "
            "a quiet machine.",
            stacklevel=2,
        )
    return result


def _measure(
    model,
    *,
    chosen,
    levels,
    settings,
    threads,
    xnnpack,
    runs,
    rounds,
    clock,
    cache_dir,
    verbose,
    start,
    reuse_cache,
):
    """`profile`'s measurement: `(Profile, whether its table was checked against the whole
    model here for the first time)`. Without `reuse_cache` every block and the whole model are
    measured and the cache entries replaced."""
    from keras_prune.export import mcu as mcu_lib
    from keras_prune.export import verify as verify_lib
    from keras_prune.export.flatbuffer import read_model

    def load(name):
        return cache_lib.load(cache_dir, _CACHE_KIND, name) if reuse_cache else None

    timed = chosen.runtime == "litert"
    models = {sparsity: _shrunk(model, sparsity) for sparsity in levels}
    plans = {sparsity: blocks_lib.blocks(models[sparsity]) for sparsity in levels}
    signatures = {}
    for sparsity in levels:
        for block in plans[sparsity]:
            signatures.setdefault(block.signature(), block)
    keys = {
        signature: cache_lib.key(_CACHE_VERSION, signature, settings) for signature in signatures
    }
    measured = {}
    for signature, name in keys.items():
        cached = load(name)
        if cached is not None:
            measured[signature] = cached
    missing = [signature for signature in signatures if signature not in measured]
    progress = keras.utils.Progbar(len(missing) + len(levels)) if verbose else None
    files = {}
    for signature in missing:
        files[signature] = _convert(signatures[signature].small_model(), chosen)
        if progress is not None:
            progress.add(1)
    whole_keys = {
        sparsity: cache_lib.key(_CACHE_VERSION, "whole", cache_lib.model_digest(m), settings)
        for sparsity, m in models.items()
    }
    whole = {}
    for sparsity in levels:
        cached = load(whole_keys[sparsity])
        complete = sparsity != 0.0 or not arena_needed(chosen) or cached and cached["arena_bytes"]
        if cached is not None and complete:
            whole[sparsity] = cached
        else:
            data = _convert(models[sparsity], chosen)
            whole[sparsity] = {"data": data, "bytes": len(data), "latency_us": None}
        if progress is not None:
            progress.add(1)
    new_whole = [f for f in levels if "data" in whole[f]]
    empty = _empty_file(chosen) if missing or new_whole else b""
    if timed and (missing or new_whole):
        # The empty file's time is the interpreter's fixed cost per invoke, paid once by the
        # whole model but once per block by the table: it is taken off every block.
        to_time = [files[s] for s in missing] + [whole[f]["data"] for f in new_whole] + [empty]
        latencies = verify_lib.measure_latencies(
            to_time, xnnpack=xnnpack, runs=runs, threads=threads, rounds=rounds, clock=clock
        )
        overhead = latencies[-1]
        for signature, latency in zip(missing, latencies, strict=False):
            measured.setdefault(signature, {})["latency_us"] = max(latency - overhead, 0.0)
        for sparsity, latency in zip(new_whole, latencies[len(missing) :], strict=False):
            whole[sparsity]["latency_us"] = latency
    for signature in missing:
        info = read_model(files[signature])
        entry = measured.setdefault(signature, {"latency_us": None})
        entry.update(bytes=max(len(files[signature]) - len(empty), 0), ops=list(info.op_names))
        cache_lib.store(cache_dir, _CACHE_KIND, keys[signature], entry)
    rows = []
    by_name = {}
    for sparsity in levels:
        for block in plans[sparsity]:
            entry = measured[block.signature()]
            point = {
                "sparsity": sparsity,
                "work": float(block.macs() + block.elements()),
                "params": float(block.params()),
                "latency_us": entry["latency_us"],
                "bytes": entry["bytes"],
            }
            if sparsity == 0.0:
                ops = entry["ops"]
                row = BlockCost(
                    name=block.name,
                    kinds=block.kinds,
                    input_shapes=[list(t.shape)[1:] for t in block.inputs],
                    output_shape=list(block.outputs[0].shape)[1:],
                    macs=block.macs(),
                    params=block.params(),
                    elements=block.elements(),
                    latency_us=entry["latency_us"],
                    bytes=entry["bytes"],
                    ops=ops,
                    unsupported=mcu_lib.unsupported_ops(ops) if chosen.runtime == "tflm" else [],
                    points=[],
                    mixing=block.mixing,
                    input_names=[t.name for t in block.inputs],
                    output_names=[t.name for t in block.outputs],
                )
                rows.append(row)
                by_name[block.name] = row
            if block.name in by_name:
                by_name[block.name].points.append(point)
    checks = []
    for sparsity in levels:
        table_sum = None
        if timed:
            table_sum = sum(measured[b.signature()]["latency_us"] for b in plans[sparsity])
        measured_us = whole[sparsity]["latency_us"]
        checks.append(
            {
                "sparsity": sparsity,
                "table_us": table_sum,
                "measured_us": measured_us,
                "error": (table_sum - measured_us) / measured_us if measured_us else None,
                "file_bytes": whole[sparsity]["bytes"],
            }
        )
    table_sums = {check["sparsity"]: check["table_us"] for check in checks}
    # A table and a whole-model timing that meet here for the first time (cached blocks against
    # a new timing, or a cached timing last checked against another sum) may disagree only
    # because one was measured under other load: measuring both again can tell.
    unchecked = any(
        len(missing) < len(signatures)
        if sparsity in new_whole
        else whole[sparsity].get("table_us") != table_sums[sparsity]
        for sparsity in levels
    )
    for sparsity in new_whole:
        entry = whole[sparsity]
        entry["table_us"] = table_sums[sparsity]
        entry["unsupported"], entry["arena_bytes"] = [], None
        if chosen.runtime == "tflm":
            entry["unsupported"] = mcu_lib.unsupported_ops(read_model(entry["data"]).op_names)
            if not entry["unsupported"] and sparsity == 0.0:
                entry["arena_bytes"] = verify_lib.find_min_arena(entry["data"])
        cache_lib.store(
            cache_dir,
            _CACHE_KIND,
            whole_keys[sparsity],
            {key: value for key, value in entry.items() if key != "data"},
        )
    arena, unsupported = whole[0.0]["arena_bytes"], whole[0.0]["unsupported"]
    result = Profile(
        target=chosen.name,
        threads=threads,
        xnnpack=bool(xnnpack),
        blocks=rows,
        checks=checks,
        file_bytes=whole[0.0]["bytes"],
        arena_bytes=arena,
        unsupported_ops=unsupported,
        seconds=time.perf_counter() - start,
        clock=clock,
        cached_blocks=len(signatures) - len(missing),
        measured_blocks=len(missing),
        peak_activation_bytes=peak_activation_bytes(
            models[0.0], None, activation_itemsize(chosen.name)
        ),
    )
    return result, unchecked


_EMPTY = {}


def arena_needed(target):
    return target.runtime == "tflm"


def _empty_file(target):
    """A file holding one trivial op: what every block's file has besides its own weights and
    ops (bytes), and the interpreter's fixed cost per invoke (time)."""
    if target.name not in _EMPTY:
        inputs = keras.Input(batch_shape=(1, 1))
        tiny = keras.Model(inputs, keras.layers.ReLU()(inputs))
        _EMPTY[target.name] = _convert(tiny, target)
    return _EMPTY[target.name]
