"""`PosttrainingReport`: what `kp.posttraining.prune_posttraining` did to each weight, and what
it left."""

import dataclasses


@dataclasses.dataclass
class PosttrainingReport:
    """What `kp.posttraining.prune_posttraining` pruned, how well, how long it took, and what it
    left dense.

    Attributes:
        method: the method's name.
        sparsity: the target sparsity.
        granularity: the mask pattern, as a string.
        samples: calibration examples used (0 for magnitude).
        sequential: True when layers were pruned one after another, each fed by the already
            pruned layers before it (Sequential and Functional models); False for subclassed
            models, whose layers all see the inputs of the unpruned model (one pass).
        weights: one row per pruned weight: `{"layer", "weight", "shape", "sparsity",
            "error", "seconds"}`, where `error` is SparseGPT's relative output error on the
            calibration inputs, `||(W - W') X|| ^ 2 / ||W X|| ^ 2` (None for other methods), and
            `seconds` the time spent on the weight's layer.
        left_dense: `{weight path or layer name: reason}` for everything not pruned.
        seconds: total time.
    """

    method: str
    sparsity: float
    granularity: str
    samples: int = 0
    sequential: bool = True
    weights: list = dataclasses.field(default_factory=list)
    left_dense: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self):
        how = "layer by layer" if self.sequential else "in one pass (subclassed model)"
        lines = [
            f"{self.method} at {self.sparsity:.2%} ({self.granularity}), {self.samples} "
            f"calibration examples, {how}: {len(self.weights)} weight(s) in {self.seconds:.1f}s"
        ]
        width = max([len(row["weight"]) for row in self.weights] + [6])
        lines.append(f"  {'weight':<{width}}  sparsity  rel. error  seconds")
        for row in self.weights:
            error = "-" if row["error"] is None else f"{row['error']:.3e}"
            lines.append(
                f"  {row['weight']:<{width}}  {row['sparsity']:>8.2%}  {error:>10}  "
                f"{row['seconds']:>7.2f}"
            )
        for name, reason in self.left_dense.items():
            lines.append(f"  left dense {name}: {reason}")
        return "\n".join(lines)
