"""Where the model runs: PyTorch (CPU/CUDA), ONNX Runtime, TensorRT."""
