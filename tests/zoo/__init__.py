"""The model zoo acceptance harness: models Keras users bring, and the stages they go through.

`models` builds each model small enough to run in seconds; `stages` runs keras_prune on it
(prune, strip, save / load, shrink, MACs, export) and reports pass / skip / fail per stage.
`tests/test_zoo.py` turns that into pytest cases and `benchmarks/model_zoo.py` into a table.
"""
