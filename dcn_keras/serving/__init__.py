from dcn_keras.serving.export import export_model
