"""What a model holds and costs: per-layer summaries, parameters and MACs, comparisons, pictures,
and the report of a pruning run (`report`)."""

from keras_prune.reporting import macs, plots, pruning_plots
from keras_prune.reporting.drawing import groups_svg
from keras_prune.reporting.macs import Comparison, LayerCost, compare, layer_costs
from keras_prune.reporting.report import RunReport, report
from keras_prune.reporting.summary import WeightRow, summary, weight_rows

__all__ = [
    "Comparison",
    "LayerCost",
    "RunReport",
    "WeightRow",
    "compare",
    "groups_svg",
    "layer_costs",
    "macs",
    "plots",
    "pruning_plots",
    "report",
    "summary",
    "weight_rows",
]
