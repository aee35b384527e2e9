"""Our own model's gate: a small Keras classifier must give the outputs of its golden.

The model and its inputs are made once, in ``GATE_MODELS`` (a model saved again is another file,
which its golden would refuse); the golden beside them is recorded with ``--envaudit-record``.
"""

import os
from pathlib import Path


def _model() -> tuple[Path, Path]:
    folder = Path(os.environ["GATE_MODELS"])
    model, inputs = folder / "classifier.keras", folder / "inputs.npz"
    if model.exists():
        return model, inputs
    import keras
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(20250601)
    image = keras.Input((16, 16, 3), name="image")
    features = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(image)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    logits = keras.layers.Dense(4, name="logits")(pooled)
    keras.Model(image, logits).save(model)
    pixels = np.random.default_rng(20250601).uniform(0, 1, (4, 16, 16, 3))
    np.savez(inputs, image=pixels.astype(np.float32))
    return model, inputs


def test_our_model_matches_its_golden(envaudit_check):
    model, inputs = _model()
    result = envaudit_check(model=model, inputs=inputs, golden=model.parent / "golden")
    assert result.subject.kind == "user-model"
