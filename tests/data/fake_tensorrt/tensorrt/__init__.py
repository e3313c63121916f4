"""A stand-in for TensorRT's Python module: just enough for build_engine.py's Python-API builder.

:class:`FakeTensorRT` drives build_engine's version-dependent calls and logs them (the unit tests make
instances with other versions). Imported as ``tensorrt`` (put ``tests/data/fake_tensorrt`` on
PYTHONPATH), the module itself is a TensorRT 8.2 without fast INT8, like a Jetson Nano: ``python3
build_engine.py`` "builds" a plan (the bytes ``PLAN``). It runs nothing: the TensorRT runtime still
needs pycuda and a GPU, so timing with it fails, as it would on a machine without one.
"""


class FakeTensorRT:
    """Just enough of the ``tensorrt`` module to drive build_engine's version-dependent calls."""

    class Logger:
        WARNING, VERBOSE = 1, 0

        def __init__(self, level):
            self.level = level

    class NetworkDefinitionCreationFlag:
        EXPLICIT_BATCH = 0

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class BuilderFlag:
        FP16, INT8 = "fp16", "int8"

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    def __init__(self, version, fast_int8=False, pools=True):
        self.__version__ = version
        self.log = []
        trt = self

        class Input:
            name, shape = "input", [1, 3, 64, 64]

        class Network:
            num_inputs = 1

            def get_input(self, i):
                return Input()

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse(self, data):
                trt.log.append(("parse", len(data)))
                return True

        class Config:
            def set_flag(self, flag):
                trt.log.append(("flag", flag))

            def __setattr__(self, name, value):
                trt.log.append((name, value))

        if pools:
            Config.set_memory_pool_limit = lambda self, pool, size: trt.log.append(("pool", pool, size))

        class Builder:
            platform_has_fast_fp16 = True
            platform_has_fast_int8 = fast_int8

            def __init__(self, logger):
                pass

            def create_network(self, flags):
                trt.log.append(("network_flags", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def build_serialized_network(self, network, config):
                return b"PLAN"

        self.Builder, self.OnnxParser = Builder, Parser


_NANO = FakeTensorRT("8.2.1.8", fast_int8=False, pools=False)
__version__ = _NANO.__version__
Logger, Builder, OnnxParser = _NANO.Logger, _NANO.Builder, _NANO.OnnxParser
NetworkDefinitionCreationFlag, BuilderFlag = _NANO.NetworkDefinitionCreationFlag, _NANO.BuilderFlag
MemoryPoolType, IInt8EntropyCalibrator2 = _NANO.MemoryPoolType, _NANO.IInt8EntropyCalibrator2
