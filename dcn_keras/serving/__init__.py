from dcn_keras.serving.export import export_model
from dcn_keras.serving.export import export_weights
from dcn_keras.serving.litert import export_litert
from dcn_keras.serving.litert_model import LiteRTModel
from dcn_keras.serving.litert_model import litert_predict
