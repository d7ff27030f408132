"""Sparse-encoded or dense storage, chosen per tensor: the file `to_tflite` keeps.

The converter's sparse encoding (`EXPERIMENTAL_SPARSITY`) is one switch per conversion: every
weight with enough zeros is encoded, or none. What that does to speed depends on the op and the
runtime: LiteRT's float FULLY_CONNECTED reads random and 1x4-block sparse weights itself (its
sparse kernel, which XNNPACK leaves to the built-in kernels), other ops get a DENSIFY op after
the weight (smaller file, dense speed, work at load), int8 FULLY_CONNECTED reads only 1x16
blocks sparse, and XNNPACK refuses int8 files with DENSIFY'd unstructured, 1x4 or 2:4 weights.

So both files are converted and the choice is made per tensor (`splice.py` builds the file):

- `objective="latency"`: a weight is stored sparse only where its op reads it sparse (no
  DENSIFY after it in the sparse conversion); every other weight is stored dense. When no
  weight is read sparse (every one needs DENSIFY, as unstructured float weights do), the
  sparse conversion is timed instead and kept when it is not slower: dense speed, smaller file. (One
  exception: a float file that qualifies for XNNPACK's sparse inference, `check_xnnpack_sparse`,
  keeps the sparse conversion whole, since on ARM XNNPACK reads DENSIFY'd 1x1 conv weights
  sparse.) The file
  with those weights spliced into the dense conversion is timed against the dense file on the
  target's default runtime (LiteRT with XNNPACK), interleaved, and kept only when XNNPACK runs
  it and it is not slower; otherwise the dense file is kept. The file is never slower than the
  dense export on the default runtime.
- `objective="size"`: the sparse conversion is kept (every weight the converter encoded), and
  timed against the dense file too when `latency_runs` > 0.

When the two conversions do not line up tensor for tensor (`splice.MisalignedError`) the
choice falls back to one of the two files, timed the same way, and the notes say why.
"""

import dataclasses

import numpy as np

from keras_prune.export import splice as _splice
from keras_prune.export import verify as _verify
from keras_prune.export.errors import InvalidModelFileError
from keras_prune.export.flatbuffer import read_model
from keras_prune.export.inspection import check_xnnpack_sparse

OBJECTIVES = ("latency", "size")

# Interleaved rounds (sparse, dense, sparse, dense, ...) per comparison; the median of the
# per-round medians is compared, so a burst of load from other processes moves one round of
# each file, not one file.
ROUNDS = 7

# The sparse-encoded file is kept when its median is at most (1 + NOISE_MARGIN) times the dense
# file's. Timing a file against itself (A/A: 12 repeats of 7 rounds of 50 runs, MLP
# 784-1024-1024-10, on a shared 2-core machine at load average 7) gave median ratios whose
# middle half lay in 0.97-1.01 (float) and 0.93-1.08 (int8), all within 0.82-1.10. The real
# differences measured are far outside that: 0.23-0.27x (float 1x4 / 1x16 blocks), 1.97x (int8
# 1x16 blocks). So the margin only settles ties: within 5% the files are as fast as can be told
# apart, and the tie goes to the sparse-encoded file, the smaller one. The result reports the
# measured ratio either way.
NOISE_MARGIN = 0.05

# Where every encoded weight sits behind DENSIFY, both files run the same kernels on the same
# dense weights once loaded (DENSIFY runs once, at the first invocation): timing them is an A/A
# test, whose ratios reached 1.10 above. There the sparse-encoded file, the smaller one, is
# kept unless it times slower than that bound; a 5% margin let timing noise flip the choice
# from run to run (the demo's MNIST CNN: 1.051x one run, kept sparse the next).
SAME_KERNELS_MARGIN = 0.10


@dataclasses.dataclass
class StorageChoice:
    """The file kept and why.

    Args:
        storage: `"sparse"` (every weight the converter encodes is stored sparse), `"mixed"`
            (some sparse, the others dense) or `"dense"` (dense storage).
        data: The `.tflite` bytes of the file kept.
        sparse_latency_us: Median latency on LiteRT with XNNPACK of the sparse-encoded
            candidate (the `"sparse"` or `"mixed"` file), or None (not timed, or refused by
            XNNPACK).
        dense_latency_us: The same for the dense file.
        spread: `{"sparse": (low, high), "dense": (low, high)}`: the smallest and largest
            per-round median, for the files timed.
        note: One line for the export notes, or None.
        tensors: One dict per weight the converter sparse-encodes: `name`, `shape`, `op`,
            `encoding` (the converter's), `storage` (`"sparse"` or `"dense"` in the file kept)
            and `reason`.
        encoded: Whether the converter sparse-encoded any weight (False: both files are one).
    """

    storage: str
    data: bytes
    sparse_latency_us: float | None = None
    dense_latency_us: float | None = None
    spread: dict | None = None
    note: str | None = None
    tensors: list = dataclasses.field(default_factory=list)
    encoded: bool = True

    @property
    def latency_vs_dense(self):
        """Median latency of the file kept / that of the dense file (None when not timed)."""
        chosen = self.dense_latency_us if self.storage == "dense" else self.sparse_latency_us
        if chosen is None or not self.dense_latency_us:
            return None
        return chosen / self.dense_latency_us


def _refusal(error):
    return str(error).split(": ", 1)[-1][:120]


def _xnnpack_accepts(data):
    """Whether LiteRT with XNNPACK loads and runs `data` once (in a child process)."""
    inputs = _verify.generated_inputs(read_model(data))
    try:
        _verify.run_litert(data, inputs, [{"kind": "predict", "xnnpack": True}])
    except _verify.XnnpackRefusedError as error:
        return False, _refusal(error)
    return True, None


def _describe_spread(rounds):
    low, high = min(rounds), max(rounds)
    return f"rounds {low:,.1f}-{high:,.1f} us"


def _tensor(pair, storage, reason):
    return {
        "name": pair.name,
        "shape": list(pair.shape),
        "op": pair.op,
        "encoding": pair.encoding,
        "storage": storage,
        "reason": reason,
    }


def _densified(pair):
    return (
        f"{pair.op} has no kernel for {pair.encoding.removeprefix('sparse CSR, ')} "
        f"{pair.dtype} weights: the converter adds DENSIFY (dense speed, work at load)"
    )


def _plan(pairs):
    """`(candidates, tensors)`: the weights to store sparse for latency, and a record each."""
    candidates, tensors = [], []
    for pair in pairs:
        if pair.direct:
            candidates.append(pair)
            tensors.append(_tensor(pair, "sparse", f"{pair.op} reads it sparse"))
        else:
            tensors.append(_tensor(pair, "dense", _densified(pair)))
    return candidates, tensors


def _all_dense(tensors, reason):
    return [
        dict(tensor, storage="dense", reason=reason) if tensor["storage"] == "sparse" else tensor
        for tensor in tensors
    ]


def _interleaved(candidate, dense, latency_runs, warmup):
    """Per-round medians of `candidate` and `dense` on LiteRT with XNNPACK, rounds interleaved
    (raises `verify.XnnpackRefusedError` when XNNPACK refuses one)."""
    return _verify.latency_rounds(
        [candidate, dense], xnnpack=True, runs=latency_runs, warmup=warmup, rounds=ROUNDS
    )


def _spread(sparse_rounds, dense_rounds):
    return {
        "sparse": (min(sparse_rounds), max(sparse_rounds)),
        "dense": (min(dense_rounds), max(dense_rounds)),
    }


def _time_dense(dense, latency_runs, warmup):
    (rounds,) = _verify.latency_rounds(
        [dense], xnnpack=True, runs=latency_runs, warmup=warmup, rounds=ROUNDS
    )
    return float(np.median(rounds)), {"dense": (min(rounds), max(rounds))}


def choose_storage(sparse, convert_dense, *, objective, latency_runs, warmup):
    """Which weights to store sparse, and the file that stores them so.

    Args:
        sparse: The sparse-encoded `.tflite` bytes.
        convert_dense: Called without arguments, returns the dense-storage bytes of the same
            model and target (only called when something is sparse-encoded).
        objective: `"latency"` or `"size"`.
        latency_runs: Timed invocations per round; 0 does not time (the sparse-encoded
            candidate is kept when XNNPACK runs it).
        warmup: Untimed invocations before each round.

    Returns:
        A `StorageChoice`.
    """
    try:
        encoded = read_model(sparse).sparse_tensors
    except InvalidModelFileError as error:
        if not error.partial_blocks:
            raise
        # The converter's encoding of partial blocks cannot be read: only dense storage works.
        note = f"Stored dense: the sparse-encoded conversion cannot be used. {error}"
        return StorageChoice("dense", convert_dense(), note=note)
    if not encoded:
        return StorageChoice("dense", sparse, encoded=False)
    dense = convert_dense()
    size = f"{len(sparse):,} B sparse vs {len(dense):,} B dense"
    if len(dense) > _splice.MAX_FILE_BYTES:
        pairs, misaligned = None, f"the dense file is over {_splice.MAX_FILE_BYTES:,} B"
    else:
        try:
            pairs, misaligned = _splice.pair_weights(sparse, dense), None
        except _splice.MisalignedError as error:
            pairs, misaligned = None, str(error)
    if objective == "size":
        return _keep_sparse(sparse, dense, pairs, latency_runs, warmup, size)
    if pairs is None:
        return _choose_file(
            sparse,
            dense,
            "sparse",
            [],
            latency_runs,
            warmup,
            size,
            f"the sparse and dense conversions cannot be spliced ({misaligned}), so the "
            "choice is per file",
        )
    if any(not pair.direct for pair in pairs) and check_xnnpack_sparse(sparse).eligible:
        # XNNPACK's sparse inference (NCHW, on ARM) runs only for sparse-encoded conv weights
        # behind DENSIFY, and only when the whole file qualifies: keep the sparse conversion
        # whole, timed like any candidate (on x86 XNNPACK leaves its sparse path off: a tie).
        tensors = [
            _tensor(
                pair,
                "sparse",
                f"{pair.op} reads it sparse"
                if pair.direct
                else "XNNPACK's sparse inference (ARM) reads it after DENSIFY: the file "
                "qualifies (check_xnnpack_sparse)",
            )
            for pair in pairs
        ]
        return _choose_file(sparse, dense, "sparse", tensors, latency_runs, warmup, size, None)
    candidates, tensors = _plan(pairs)
    if not candidates:
        # Every encoded weight sits behind DENSIFY: the sparse file runs at dense speed and is
        # smaller, so it is kept when it is not slower (a tie goes to the smaller file), as the
        # per-file choice did; int8 files that XNNPACK refuses are stored dense.
        behind_densify = [
            _tensor(pair, "sparse", f"{_densified(pair)}; stored sparse: same speed, smaller")
            for pair in pairs
        ]
        choice = _choose_file(
            sparse,
            dense,
            "sparse",
            behind_densify,
            latency_runs,
            warmup,
            size,
            "no sparse-encoded weight is read sparse by its op: each needs DENSIFY",
            margin=SAME_KERNELS_MARGIN,
        )
        if choice.storage == "dense":
            choice.tensors = tensors
        return choice
    if len(candidates) == len(pairs):
        candidate, storage = sparse, "sparse"
    else:
        candidate, storage = _splice.splice(sparse, dense, candidates), "mixed"
    return _choose_file(candidate, dense, storage, tensors, latency_runs, warmup, size, None)


def _keep_sparse(sparse, dense, pairs, latency_runs, warmup, size):
    """`objective="size"`: the sparse conversion, timed against the dense one."""
    tensors = [
        _tensor(pair, "sparse", "objective='size': the converter's encoding")
        for pair in pairs or []
    ]
    if not latency_runs:
        return StorageChoice("sparse", sparse, tensors=tensors)
    try:
        sparse_rounds, dense_rounds = _interleaved(sparse, dense, latency_runs, warmup)
    except _verify.XnnpackRefusedError as error:
        median, spread = _time_dense(dense, latency_runs, warmup)
        return StorageChoice(
            "sparse",
            sparse,
            dense_latency_us=median,
            spread=spread,
            tensors=tensors,
            note=f"objective='size': kept the sparse-encoded file ({size}); XNNPACK refuses "
            f"it ({_refusal(error)}), so it was not timed against the dense file",
        )
    sparse_median, dense_median = float(np.median(sparse_rounds)), float(np.median(dense_rounds))
    return StorageChoice(
        "sparse",
        sparse,
        sparse_latency_us=sparse_median,
        dense_latency_us=dense_median,
        spread=_spread(sparse_rounds, dense_rounds),
        tensors=tensors,
        note=f"objective='size': kept the sparse-encoded file ({size}); "
        f"{_measured(sparse_median, sparse_rounds, dense_median, dense_rounds, latency_runs)}",
    )


def _measured(sparse_median, sparse_rounds, dense_median, dense_rounds, latency_runs):
    return (
        f"sparse {sparse_median:,.1f} us ({_describe_spread(sparse_rounds)}) vs dense "
        f"{dense_median:,.1f} us ({_describe_spread(dense_rounds)}) = "
        f"{sparse_median / dense_median:.2f}x on LiteRT+XNNPACK, medians of {ROUNDS} "
        f"interleaved rounds of {latency_runs}"
    )


def _choose_file(
    candidate, dense, storage, tensors, latency_runs, warmup, size, why, margin=NOISE_MARGIN
):
    """`objective="latency"`: the sparse-encoded `candidate` if XNNPACK runs it and it is not
    slower than `dense` (its median at most `1 + margin` times the dense one), else `dense`."""
    which = "sparse-encoded file" if storage == "sparse" else "file with mixed storage"
    prefix = "objective='latency'" + (f" ({why})" if why else "")
    sizes = f"{size}" + ("" if storage == "sparse" else f", {len(candidate):,} B mixed")
    if not latency_runs:
        accepted, reason = _xnnpack_accepts(candidate)
        if accepted:
            return StorageChoice(
                storage,
                candidate,
                tensors=tensors,
                note=f"{prefix} with latency_runs=0: not timed; kept the {which} since "
                f"XNNPACK runs it ({sizes})",
            )
        return StorageChoice(
            "dense",
            dense,
            tensors=_all_dense(tensors, f"XNNPACK refuses the {which}"),
            note=f"{prefix}: XNNPACK refuses the {which} ({reason}); wrote dense storage "
            f"({sizes}; not timed, latency_runs=0)",
        )
    try:
        sparse_rounds, dense_rounds = _interleaved(candidate, dense, latency_runs, warmup)
    except _verify.XnnpackRefusedError as error:
        median, spread = _time_dense(dense, latency_runs, warmup)
        return StorageChoice(
            "dense",
            dense,
            dense_latency_us=median,
            spread=spread,
            tensors=_all_dense(tensors, f"XNNPACK refuses the {which}"),
            note=f"{prefix}: XNNPACK refuses the {which} ({_refusal(error)}); wrote dense "
            f"storage ({sizes})",
        )
    sparse_median, dense_median = float(np.median(sparse_rounds)), float(np.median(dense_rounds))
    keep = sparse_median <= dense_median * (1 + margin)
    measured = _measured(sparse_median, sparse_rounds, dense_median, dense_rounds, latency_runs)
    if keep:
        smaller = ", and smaller" if len(candidate) < len(dense) else ""
        verdict = (
            f"kept the {which} (not slower than dense beyond the {margin:.0%} tie margin{smaller})"
        )
    else:
        verdict = f"wrote dense storage (the {which} is slower)"
        tensors = _all_dense(
            tensors, f"the {which} is {sparse_median / dense_median:.2f}x the dense latency"
        )
    return StorageChoice(
        storage if keep else "dense",
        candidate if keep else dense,
        sparse_latency_us=sparse_median,
        dense_latency_us=dense_median,
        spread=_spread(sparse_rounds, dense_rounds),
        tensors=tensors,
        note=f"{prefix}: {verdict}: {measured}; {sizes}",
    )
