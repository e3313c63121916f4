"""Export: recipes, BN folding, parity checks and one lowering per format (ONNX, TensorRT, TFLite).

Entry point: :func:`edgepose.export.pipeline.export_model`; ``edgepose export`` wraps it.
"""
