"""A stand-in for TensorRT's Python module: just enough for build_engine.py's Python-API builder.

Used by the bench tests on machines without TensorRT: put ``tests/data/fake_tensorrt`` on PYTHONPATH
and ``python3 build_engine.py`` "builds" a plan (the bytes ``FAKE-PLAN``). It runs nothing: the TensorRT
runtime still needs pycuda and a GPU, so timing with it fails, as it would on a machine without one.
"""

__version__ = "8.2.1.8"


class Logger:
    WARNING, VERBOSE = 1, 0

    def __init__(self, level):
        self.level = level


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH = 0


class BuilderFlag:
    FP16, INT8 = "fp16", "int8"


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass


class _Input:
    name, shape = "input", [1, 3, 64, 64]


class _Network:
    num_inputs = 1

    def get_input(self, index):
        return _Input()


class OnnxParser:
    num_errors = 0

    def __init__(self, network, logger):
        pass

    def parse(self, data):
        return data.startswith(b"\x08")  # a serialized ONNX ModelProto starts with field 1 (ir_version)


class _Config:
    max_workspace_size = 0

    def set_flag(self, flag):
        pass


class Builder:
    platform_has_fast_fp16 = True
    platform_has_fast_int8 = False  # a Jetson Nano

    def __init__(self, logger):
        pass

    def create_network(self, flags):
        return _Network()

    def create_builder_config(self):
        return _Config()

    def build_serialized_network(self, network, config):
        return b"FAKE-PLAN"
