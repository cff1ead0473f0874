"""The options of POST /v1/models/convert, as the API documents them."""

from __future__ import annotations

OPTIONS_EXAMPLE = ('{"trainable": "last:1", "loss": "categorical_crossentropy", '
                   '"from_logits": false, "optimizer": {"name": "sgd", "learning_rate": 0.1}, '
                   '"label": {"name": "y"}}')
OPTIONS_DESCRIPTION = (
    "JSON object; every key optional, an unknown key is a 422 naming it. `trainable`: "
    '"all" (default), "last:N" (the last N top-level layers with weights) or a list of layer '
    "names; the other layers are frozen. `loss`: categorical_crossentropy (default), "
    "sparse_categorical_crossentropy, binary_crossentropy or mse; `from_logits` (false). "
    '`optimizer`: {"name": "sgd", "learning_rate": 0.01, "momentum": 0} (default) or '
    '{"name": "adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, '
    '"epsilon": 1e-7}. `label`: {"name": "label", "shape": [...], "dtype": "float32" | '
    '"int32" | "int64"}: the train signature\'s label input (shape and dtype default from the '
    "loss and the model's output).")
