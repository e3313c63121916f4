"""edgepose: LitePose and Lite-HRNet on edge devices (ONNX, TensorRT, TFLite), with MACs and latency."""

__version__ = "0.1.0"
