"""Requests for TensorFlow Serving (REST and gRPC), and a local executor.

The request builders are what a client sends to `tensorflow_model_server`;
the `run_*_locally` functions answer such a request from the SavedModel in
this process, the way the server would, so clients can be tested without a
server.
"""

import base64
import json

import numpy as np

from dcn_keras.backend import tf


def rest_predict_body(images=None, image_bytes=None, signature_name=None):
    """The JSON body of a REST `:predict` call (row "instances" format).

    Args:
        images: float array `[batch, H, W, C]` in [0, 1], for `serving_default`.
        image_bytes: list of encoded PNG/JPEG `bytes`, for `serving_bytes`
            (sent base64-encoded as `{"b64": ...}`).
        signature_name: str, defaults to the signature the input belongs to.
    """
    if (images is None) == (image_bytes is None):
        raise ValueError("Pass exactly one of `images` and `image_bytes`.")
    if images is not None:
        body = {"signature_name": signature_name or "serving_default",
                "instances": np.asarray(images, np.float32).tolist()}
    else:
        body = {"signature_name": signature_name or "serving_bytes",
                "instances": [{"image_bytes": {"b64": base64.b64encode(b).decode("ascii")}}
                              for b in image_bytes]}
    return json.dumps(body)


def grpc_predict_request(model_name, images=None, image_bytes=None, signature_name=None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for the model."""
    from tensorflow_serving.apis import predict_pb2

    if (images is None) == (image_bytes is None):
        raise ValueError("Pass exactly one of `images` and `image_bytes`.")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    if images is not None:
        request.model_spec.signature_name = signature_name or "serving_default"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.asarray(images, np.float32)))
    else:
        request.model_spec.signature_name = signature_name or "serving_bytes"
        request.inputs["image_bytes"].CopyFrom(
            tf.make_tensor_proto(list(image_bytes), dtype=tf.string))
    return request


def run_grpc_request_locally(saved_model_dir, request):
    """Answers a `PredictRequest` with a `PredictResponse`, as the server would."""
    from tensorflow_serving.apis import predict_pb2

    signature = tf.saved_model.load(saved_model_dir).signatures[request.model_spec.signature_name]
    inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in signature(**inputs).items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


def run_rest_request_locally(saved_model_dir, body):
    """Answers a REST body with `{"predictions": [...]}`, as the server would."""
    request = json.loads(body)
    signature = tf.saved_model.load(saved_model_dir).signatures[request["signature_name"]]
    instances = request["instances"]
    if instances and isinstance(instances[0], dict):
        values = [base64.b64decode(i["image_bytes"]["b64"]) for i in instances]
        outputs = signature(image_bytes=tf.constant(values))
    else:
        outputs = signature(images=tf.constant(instances, tf.float32))
    names = sorted(outputs)
    rows = [{name: outputs[name][i].numpy().tolist() for name in names}
            for i in range(int(outputs[names[0]].shape[0]))]
    return {"predictions": rows}
