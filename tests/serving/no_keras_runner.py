"""Runs a SavedModel's signatures with keras and dcn_keras unimportable.

    python no_keras_runner.py SAVED_MODEL_DIR INPUTS.npz OUTPUTS.npz
"""

import sys

# None in sys.modules makes `import keras` fail, while TensorFlow's own
# probe (importlib.util.find_spec) simply finds nothing.
BLOCKED = ("keras", "dcn_keras", "tf_keras")
for _name in BLOCKED:
    sys.modules[_name] = None

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(saved_model_dir, inputs_path, outputs_path):
    inputs = np.load(inputs_path, allow_pickle=False)
    loaded = tf.saved_model.load(saved_model_dir)
    out = {}
    for key, value in loaded.signatures["serving_default"](images=tf.constant(inputs["images"])).items():
        out[f"default/{key}"] = value.numpy()
    encoded = [bytes(b) for b in inputs["image_bytes"]]
    for key, value in loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded)).items():
        out[f"bytes/{key}"] = value.numpy()
    loaded_ours = [m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in BLOCKED]
    assert not loaded_ours, loaded_ours
    try:
        import keras  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("keras was importable")
    np.savez(outputs_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
