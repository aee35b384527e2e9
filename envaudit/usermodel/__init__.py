"""The user's own model as the workload: a SavedModel or a ``.keras`` file on the user's inputs.

The canary detector says whether an environment moves numerics; a user model says whether it moves
*their* outputs. A user-model bundle has the same shape as a canary bundle (``store.py``): the
manifest's workload is ``user-model`` and names the model by path and SHA-256, its signature and
specs, and where its inputs came from; ``stages.MODE`` holds the decoded inputs, the recorded layer
outputs and the model outputs; ``inputs`` holds the inputs themselves; ``probes`` the canary's
probes, run beside the model as the precision witness (a user model has no float64 twin).

Roles: ``spec.py`` (what a manifest says about the model, validated; option parsing), ``files.py``
(model identity and location, input files; no TensorFlow), ``golden.py`` (the golden and its
model verified before anything runs), ``detections.py`` (detections from output arrays),
``record.py`` (composes a recording; a check is ``pipeline/own_model.py``). Running the model is
``workload/user_model.py`` (its fixed batches ``workload/model_batches.py``, a SavedModel's layers
``workload/graph_layers.py``; converted for a tflite mode and run by LiteRT,
``workload/user_tflite.py``): only ``workload/`` imports TensorFlow.
"""

WORKLOAD_ID = "user-model"
WORKLOAD_VERSION = "1"
