"""Device-side code: runtimes, pre/post-processing, decoding, drawing and the run script.

Everything in this package imports only the standard library, numpy, OpenCV and the runtime
in use (onnxruntime, ai_edge_litert / tflite_runtime, tensorrt + pycuda), runs on Python 3.6+
(Jetson Nano, JetPack 4.6) and never imports torch or the rest of edgepose. `edgepose export`
copies it next to the artifact as ``edgepose_device/``, so imports inside it are relative.
"""
