"""Sparse-encoded or dense storage: which of the two files `to_tflite` keeps.

The converter's sparse encoding (`EXPERIMENTAL_SPARSITY`) is one switch per conversion: every
qualifying weight is encoded, or none. What it does to speed depends on the runtime: LiteRT's
float FULLY_CONNECTED runs random and 1x4-block sparsity faster, other ops get a DENSIFY op
(smaller file, dense speed), int8 sparse FULLY_CONNECTED runs only 1x16 blocks and XNNPACK
leaves it to the slower built-in kernels, and XNNPACK refuses int8 files with unstructured,
1x4 or 2:4 sparse weights outright. So for `objective="latency"` both files are converted and
timed on the target's default runtime (LiteRT with XNNPACK), interleaved, and the sparse file
is kept only when XNNPACK runs it and it is not slower than the dense file; for
`objective="size"` the sparse file is kept. The choice is per file, not per tensor, because
the converter's switch is per conversion.
"""

import dataclasses

import numpy as np

from keras_prune.export import verify as _verify
from keras_prune.export.flatbuffer import read_model

OBJECTIVES = ("latency", "size")

# Interleaved rounds (sparse, dense, sparse, dense, ...) per comparison; the median of the
# per-round medians is compared, so a burst of load from other processes moves one round of
# each file, not one file.
ROUNDS = 7

# The sparse file is kept when its median is at most (1 + NOISE_MARGIN) times the dense
# file's. Timing a file against itself (A/A: 12 repeats of 7 rounds of 50 runs, MLP
# 784-1024-1024-10, on a shared 2-core machine at load average 7) gave median ratios whose
# middle half lay in 0.97-1.01 (float) and 0.93-1.08 (int8), all within 0.82-1.10. The real
# differences measured are far outside that: 0.23-0.27x (float 1x4 / 1x16 blocks), 1.97x (int8
# 1x16 blocks). So the margin only settles ties (sparse weights DENSIFY'd at load run the same
# dense kernel): within 5% the files are as fast as can be told apart, and the tie goes to the
# sparse file, the smaller one. The result reports the measured ratio either way.
NOISE_MARGIN = 0.05


@dataclasses.dataclass
class StorageChoice:
    """The file kept and why.

    Args:
        storage: `"sparse"` (sparse-encoded weights) or `"dense"` (dense storage).
        data: The `.tflite` bytes of the file kept.
        sparse_latency_us: Median latency of the sparse file on LiteRT with XNNPACK, or None
            (not timed, or refused by XNNPACK).
        dense_latency_us: The same for the dense file.
        spread: `{"sparse": (low, high), "dense": (low, high)}`: the smallest and largest
            per-round median, for the files timed.
        note: One line for the export notes, or None.
    """

    storage: str
    data: bytes
    sparse_latency_us: float | None = None
    dense_latency_us: float | None = None
    spread: dict | None = None
    note: str | None = None

    @property
    def latency_vs_dense(self):
        """Median latency of the file kept / that of the dense file (None when not timed)."""
        chosen = self.sparse_latency_us if self.storage == "sparse" else self.dense_latency_us
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


def choose_storage(sparse, convert_dense, *, objective, latency_runs, warmup):
    """Which file to keep: the sparse-encoded one or its dense-storage twin.

    Args:
        sparse: The sparse-encoded `.tflite` bytes.
        convert_dense: Called without arguments, returns the dense-storage bytes of the same
            model and target (only called when the choice needs them).
        objective: `"latency"` or `"size"`.
        latency_runs: Timed invocations per round; 0 does not time (the sparse file is kept
            when XNNPACK runs it).
        warmup: Untimed invocations before each round.

    Returns:
        A `StorageChoice`.
    """
    if not read_model(sparse).sparse_tensors:
        return StorageChoice("dense", sparse)
    if objective == "size":
        return StorageChoice("sparse", sparse)
    dense = convert_dense()
    size = f"{len(sparse):,} B sparse vs {len(dense):,} B dense"
    if not latency_runs:
        accepted, reason = _xnnpack_accepts(sparse)
        if accepted:
            return StorageChoice(
                "sparse",
                sparse,
                note="objective='latency' with latency_runs=0: not timed; kept the "
                f"sparse-encoded file since XNNPACK runs it ({size})",
            )
        return StorageChoice(
            "dense",
            dense,
            note="objective='latency': XNNPACK refuses the sparse-encoded file "
            f"({reason}); wrote dense storage ({size}; not timed, latency_runs=0)",
        )
    try:
        sparse_rounds, dense_rounds = _verify.latency_rounds(
            [sparse, dense], xnnpack=True, runs=latency_runs, warmup=warmup, rounds=ROUNDS
        )
    except _verify.XnnpackRefusedError as error:
        (dense_rounds,) = _verify.latency_rounds(
            [dense], xnnpack=True, runs=latency_runs, warmup=warmup, rounds=ROUNDS
        )
        return StorageChoice(
            "dense",
            dense,
            dense_latency_us=float(np.median(dense_rounds)),
            spread={"dense": (min(dense_rounds), max(dense_rounds))},
            note=f"objective='latency': XNNPACK refuses the sparse-encoded file "
            f"({_refusal(error)}); wrote dense storage ({size})",
        )
    sparse_median = float(np.median(sparse_rounds))
    dense_median = float(np.median(dense_rounds))
    keep_sparse = sparse_median <= dense_median * (1 + NOISE_MARGIN)
    measured = (
        f"sparse {sparse_median:,.1f} us ({_describe_spread(sparse_rounds)}) vs dense "
        f"{dense_median:,.1f} us ({_describe_spread(dense_rounds)}) = "
        f"{sparse_median / dense_median:.2f}x on LiteRT+XNNPACK, medians of {ROUNDS} "
        f"interleaved rounds of {latency_runs}"
    )
    verdict = (
        "kept the sparse-encoded file (not slower than dense"
        + (", and smaller" if len(sparse) < len(dense) else "")
        + ")"
        if keep_sparse
        else "wrote dense storage (the sparse file is slower)"
    )
    return StorageChoice(
        "sparse" if keep_sparse else "dense",
        sparse if keep_sparse else dense,
        sparse_latency_us=sparse_median,
        dense_latency_us=dense_median,
        spread={
            "sparse": (min(sparse_rounds), max(sparse_rounds)),
            "dense": (min(dense_rounds), max(dense_rounds)),
        },
        note=f"objective='latency': {verdict}: {measured}; {size}",
    )
