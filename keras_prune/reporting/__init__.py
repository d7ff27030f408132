"""What a model holds and costs: per-layer summaries, parameters and MACs, comparisons, pictures."""

from keras_prune.reporting import macs
from keras_prune.reporting.drawing import groups_svg
from keras_prune.reporting.macs import Comparison, LayerCost, compare, layer_costs
from keras_prune.reporting.summary import WeightRow, summary, weight_rows

__all__ = [
    "Comparison",
    "LayerCost",
    "WeightRow",
    "compare",
    "groups_svg",
    "layer_costs",
    "macs",
    "summary",
    "weight_rows",
]
