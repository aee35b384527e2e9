"""``python tools/example_models.py FOLDER``: the two models the tests build, for trying
``envaudit record --model`` by hand (the README's worked example).

Writes ``FOLDER/classifier.keras`` (a Keras functional model with named layers),
``FOLDER/detector`` (envaudit's canary detector as a SavedModel with the TF Object Detection
API's outputs) and ``FOLDER/images`` (the canary's six scenes, PNG and JPEG).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from model_builders import (  # noqa: E402
    export_detector_savedmodel,
    save_keras_model,
    write_images,
)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python tools/example_models.py FOLDER\n")
        return 2
    folder = Path(argv[0])
    (folder / "images").mkdir(parents=True, exist_ok=True)
    save_keras_model(folder / "classifier.keras")
    export_detector_savedmodel(folder / "detector")
    write_images(folder / "images")
    print(f"wrote {folder / 'classifier.keras'}, {folder / 'detector'} and {folder / 'images'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
