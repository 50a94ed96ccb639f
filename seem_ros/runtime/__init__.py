"""Where the model runs: PyTorch (CPU/CUDA, CUDA graphs), ONNX Runtime, TensorRT, and the caches of
exported graphs and engines."""
