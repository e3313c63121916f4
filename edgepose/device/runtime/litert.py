"""TFLite backend: ``ai_edge_litert`` (LiteRT), falling back to the frozen ``tflite_runtime``.

Int8 models are fed and read through the (scale, zero_point) stored in the model's own input and
output tensors; the manifest's copy of them is informative only.
"""

import numpy as np

from ..errors import EdgeposeError
from ..formats import backend_of_module
from .base import Runtime, check_shapes, dequantize, fixed_batch, quantize

BACKEND = backend_of_module(__name__)


def _interpreter_module():
    """The Interpreter module of whichever TFLite runtime is installed (LiteRT first)."""
    errors = []
    for package in BACKEND.packages:
        try:
            return __import__(package + ".interpreter", fromlist=["Interpreter"])
        except ImportError as exc:
            errors.append(str(exc))
    raise EdgeposeError(
        "no TFLite runtime is installed ({}): pip install ai-edge-litert (Python 3.10+) "
        "or tflite-runtime (Python 3.9 and older)".format("; ".join(errors))
    )


class TFLiteRuntime(Runtime):
    """A TFLite ``Interpreter`` behind the common interface (XNNPACK on CPU by default)."""

    backend = BACKEND.name

    def __init__(self, path, manifest, threads=None):
        Runtime.__init__(self, path, manifest, threads)
        module = _interpreter_module()
        self.backend = "{} ({})".format(BACKEND.name, module.__name__.split(".")[0])
        delegates = []
        delegate = (manifest.get("runtime") or {}).get("delegate")
        if delegate and delegate not in ("xnnpack", "cpu"):
            try:
                delegates.append(module.load_delegate(delegate))
            except (ValueError, OSError) as exc:
                raise EdgeposeError(
                    "cannot load the TFLite delegate {!r}: {}".format(delegate, exc)
                ) from None
        try:
            self.interpreter = module.Interpreter(
                model_path=path,
                num_threads=int(threads) if threads else None,
                experimental_delegates=delegates,
            )
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgeposeError("TFLite cannot load {}: {}".format(path, str(exc).splitlines()[0])) from None
        self.version = getattr(module, "__version__", "") or _package_version(module.__name__)
        self.input = self.interpreter.get_input_details()[0]
        self.max_batch = fixed_batch([int(d) for d in self.input["shape"]])
        outs = self.interpreter.get_output_details()
        self.out_details = outs
        self.mapping = self.match_outputs([(o["name"], [int(d) for d in o["shape"]]) for o in outs])
        check_shapes(
            path,
            manifest,
            _signature(self.input),
            dict((name, _signature(outs[i])) for name, i in self.mapping.items()),
        )

    def _infer(self, x):
        detail = self.input
        scale, zero_point = detail["quantization"]
        if np.issubdtype(detail["dtype"], np.integer) and scale:
            x = quantize(x, scale, zero_point, detail["dtype"])
        else:
            x = x.astype(detail["dtype"])
        self.interpreter.set_tensor(detail["index"], x)
        self.interpreter.invoke()
        result = {}
        for name, i in self.mapping.items():
            out = self.out_details[i]
            value = self.interpreter.get_tensor(out["index"])
            scale, zero_point = out["quantization"]
            if np.issubdtype(value.dtype, np.integer) and scale:
                value = dequantize(value, scale, zero_point)
            result[name] = value.astype(np.float32)
        return result


def _signature(detail):
    """A tensor's shape with -1 where it is dynamic (``shape_signature``), else its shape."""
    shape = detail.get("shape_signature")
    shape = detail["shape"] if shape is None or not len(shape) else shape
    return [int(d) for d in shape]


def _package_version(module_name):
    package = module_name.split(".")[0]
    try:
        return __import__(package).__version__
    except (ImportError, AttributeError):
        return ""


RUNTIME = TFLiteRuntime
