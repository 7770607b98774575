"""Interchange with other frameworks: Keras files and ONNX graphs."""
