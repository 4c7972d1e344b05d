"""The exported model: ONNX graphs, onnxruntime against torch, the committed golden model."""
