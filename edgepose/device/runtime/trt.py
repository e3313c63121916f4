"""TensorRT backend for the Jetson Nano (TensorRT 8.0/8.2 bindings API) and newer GPUs (>= 8.5 / 10.x tensor API).

Loads ``model.engine`` (built on the device by build_engine.py, since engines are tied to the
TensorRT version and GPU) and moves buffers with pycuda, which is what JetPack 4.6 / Python 3.6 has.
"""

import numpy as np

from ..errors import EdgeposeError
from ..formats import backend_of_module
from .base import Runtime, check_shapes, fixed_batch, require

BACKEND = backend_of_module(__name__)
_TRT_HINT = "on a Jetson it comes with JetPack (python3-libnvinfer); elsewhere pip install tensorrt"
_CUDA_HINT = "pip install pycuda (on a Jetson with CPATH/LIBRARY_PATH pointing at /usr/local/cuda)"


class TensorRTRuntime(Runtime):
    """A deserialised TensorRT engine with page-locked host buffers and one CUDA stream."""

    backend = BACKEND.name

    def __init__(self, path, manifest, threads=None):
        Runtime.__init__(self, path, manifest, threads)
        trt = require(BACKEND.packages[0], _TRT_HINT)
        self.cuda = require("pycuda.driver", _CUDA_HINT)
        require("pycuda.autoinit", _CUDA_HINT)  # creates the CUDA context on GPU 0
        self.trt = trt
        self.version = trt.__version__
        self.logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as fh:
            self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(fh.read())
        if self.engine is None:
            raise EdgeposeError(
                "TensorRT {} cannot load {}: engines only run on the TensorRT version and GPU that built "
                "them; rebuild it here with `python3 build_engine.py`".format(trt.__version__, path)
            )
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.Stream()
        self.tensor_api = hasattr(self.engine, "num_io_tensors")  # TensorRT >= 8.5
        self.io = self._io_tensors()
        inputs = [t for t in self.io if t["input"]]
        if len(inputs) != 1:
            raise EdgeposeError("{} has {} inputs; edgepose models have one".format(path, len(inputs)))
        self.input = inputs[0]
        self.dynamic = fixed_batch(self.input["shape"]) is None
        self.max_batch = None if self.dynamic else self.input["shape"][0]
        outs = [t for t in self.io if not t["input"]]
        self.mapping = self.match_outputs([(t["name"], t["shape"]) for t in outs])
        self.outputs = outs
        check_shapes(
            path, manifest, self.input["shape"], dict((n, outs[i]["shape"]) for n, i in self.mapping.items())
        )
        self._buffers = {}

    def _io_tensors(self):
        engine, trt = self.engine, self.trt
        tensors = []
        if self.tensor_api:
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                tensors.append(
                    {
                        "name": name,
                        "index": i,
                        "input": engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                        "shape": [int(d) for d in engine.get_tensor_shape(name)],
                        "dtype": np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                    }
                )
        else:
            for i in range(engine.num_bindings):
                tensors.append(
                    {
                        "name": engine.get_binding_name(i),
                        "index": i,
                        "input": bool(engine.binding_is_input(i)),
                        "shape": [int(d) for d in engine.get_binding_shape(i)],
                        "dtype": np.dtype(trt.nptype(engine.get_binding_dtype(i))),
                    }
                )
        return tensors

    def _shape_for(self, tensor, batch):
        if tensor["input"]:
            return [batch] + tensor["shape"][1:]
        if self.tensor_api:
            return [int(d) for d in self.context.get_tensor_shape(tensor["name"])]
        return [int(d) for d in self.context.get_binding_shape(tensor["index"])]

    def _buffers_for(self, batch):
        """Page-locked host + device buffers per tensor for this batch size (cached)."""
        if batch in self._buffers:
            return self._buffers[batch]
        if self.dynamic:
            shape = tuple([batch] + self.input["shape"][1:])
            if self.tensor_api:
                self.context.set_input_shape(self.input["name"], shape)
            else:
                self.context.set_binding_shape(self.input["index"], shape)
        buffers = {}
        for tensor in self.io:
            shape = self._shape_for(tensor, batch)
            host = self.cuda.pagelocked_empty(int(np.prod(shape)), tensor["dtype"])
            buffers[tensor["name"]] = (host, self.cuda.mem_alloc(host.nbytes), shape)
        self._buffers[batch] = buffers
        return buffers

    def _infer(self, x):
        batch = x.shape[0]
        buffers = self._buffers_for(batch)
        if self.dynamic:  # the context keeps one shape; set it for this call
            shape = tuple(x.shape)
            if self.tensor_api:
                self.context.set_input_shape(self.input["name"], shape)
            else:
                self.context.set_binding_shape(self.input["index"], shape)
        host, device, _ = buffers[self.input["name"]]
        np.copyto(host, x.ravel().astype(self.input["dtype"]))
        self.cuda.memcpy_htod_async(device, host, self.stream)
        if self.tensor_api:
            for tensor in self.io:
                self.context.set_tensor_address(tensor["name"], int(buffers[tensor["name"]][1]))
            ok = self.context.execute_async_v3(self.stream.handle)
        else:
            bindings = [int(buffers[t["name"]][1]) for t in sorted(self.io, key=lambda t: t["index"])]
            ok = self.context.execute_async_v2(bindings, self.stream.handle)
        if not ok:
            raise EdgeposeError("TensorRT failed to run {}".format(self.path))
        for tensor in self.outputs:
            host, device, _ = buffers[tensor["name"]]
            self.cuda.memcpy_dtoh_async(host, device, self.stream)
        self.stream.synchronize()
        result = {}
        for name, i in self.mapping.items():
            tensor = self.outputs[i]
            host, _, shape = buffers[tensor["name"]]
            result[name] = host.reshape(shape).astype(np.float32)
        return result


RUNTIME = TensorRTRuntime
