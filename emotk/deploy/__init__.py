"""Deployable models: exported model dirs (``export``, ``card``), inference on any audio (``audio``),
ONNX graphs and the onnxruntime backend (``onnx``)."""
