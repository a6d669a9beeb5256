from dcn_keras.serving.export import export_model
from dcn_keras.serving.export_from import export_from
from dcn_keras.serving.litert import export_litert
from dcn_keras.serving.litert import litert_predict
