from dcn_keras.serving.export import export_model
from dcn_keras.serving.export_from import export_from
