"""`prune_once`: prune a trained model in one shot, ready to fine-tune."""

from keras_prune.core import criteria as criteria_lib
from keras_prune.core import validation
from keras_prune.core.schedules import OneShotSparsity
from keras_prune.engine.engine import engine_for
from keras_prune.engine.gradients import check_calibration_data, collect_gradients
from keras_prune.pruning.prune_strip import prune


def prune_once(
    model,
    sparsity,
    granularity="unstructured",
    criterion="magnitude",
    allocation="auto",
    filters=None,
    calibration_data=None,
):
    """Prune a (trained) model in one shot; returns the pruned copy, ready to fine-tune.

    Masks are computed now, with the criterion and allocation given, and never recomputed (the
    wrappers get a `OneShotSparsity` schedule), so fine-tune with a plain `fit`.

    Args:
        model: a built Sequential or Functional model; left untouched.
        sparsity: target sparsity in [0, 1) (for `ThresholdAllocation` it is only recorded).
        granularity: see `kp.prune`.
        criterion: see `kp.criteria`; gradient criteria need `calibration_data` and a compiled
            `model` (its loss is used).
        allocation: as in `kp.prune`: "auto" (default) ranks binary unstructured weights
            globally (`kp.allocation.GlobalAllocation()`) and sets everything else per layer;
            at channel granularity per layer means the channels of each dependency group ranked
            together (BatchNormalization held at zero), so `kp.shrink` removes them.
            "per_layer" (or None) puts every tensor at `sparsity`. An explicit allocation
            ranks channels layer by layer; then each group keeps a channel if any of its layers
            kept it.
        filters: which layers to prune (see `kp.prune`).
        calibration_data: `(x, y)` for gradient criteria.

    Example:

    ```python
    pruned = kp.prune_once(model, 0.9, allocation=kp.allocation.GlobalAllocation())
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, epochs=2)
    ```
    """
    validation.check_model("model", model)
    validation.check_sparsity("sparsity", sparsity)
    chosen = criteria_lib.get(criterion)
    if chosen.needs_gradients:
        # Checked before anything is copied: a copy of a large model is wasted on a typo.
        if calibration_data is None:
            raise ValueError(
                f"Expected `calibration_data`=(x, y) for criterion={chosen!r}, which ranks by "
                "gradients. Received: calibration_data=None. Pass a few hundred training "
                "examples, e.g. calibration_data=(x[:256], y[:256])."
            )
        check_calibration_data(calibration_data, model=model, labels=True)
        if not getattr(model, "compiled", False):
            raise ValueError(
                f"criterion={chosen!r} ranks by the loss gradient: compile `model` "
                f"({model.name!r}) first, e.g. model.compile('adam', "
                "'sparse_categorical_crossentropy'); its loss is used."
            )
    pruned = prune(
        model,
        schedule=OneShotSparsity(sparsity),
        granularity=granularity,
        criterion=chosen,
        filters=filters,
        allocation=allocation,
    )
    engine = engine_for(pruned)
    if chosen.needs_gradients:
        pruned.compile(optimizer="sgd", loss=model.loss)
        collect_gradients(pruned, calibration_data)
    engine.attach()
    engine.prune_to(sparsity, step=0)  # with the allocation the wrappers declare
    return pruned
