"""Post-training pruning from calibration data, without retraining: SparseGPT, Wanda, magnitude.

Example:

```python
# model: a trained Keras model; x: a few hundred of its training inputs. 2:4 prunes the
# layers whose input channels are a multiple of 4 (`filters=` picks them).
pruned = kp.posttraining.prune_posttraining(
    model, x, method="wanda", granularity="2:4", filters=["conv2", "dense1", "logits"]
)
print(pruned.posttraining_report)
```
"""

from keras_prune.posttraining.calibration import Calibration, calibration_batches
from keras_prune.posttraining.methods import Magnitude, PosttrainingMethod, SparseGPT, Wanda
from keras_prune.posttraining.prune_posttraining import prune_posttraining
from keras_prune.posttraining.report import PosttrainingReport
from keras_prune.posttraining.wanda import wanda_scores

__all__ = [
    "Calibration",
    "Magnitude",
    "PosttrainingMethod",
    "PosttrainingReport",
    "SparseGPT",
    "Wanda",
    "calibration_batches",
    "prune_posttraining",
    "wanda_scores",
]
