"""onnxruntime backend (host, Raspberry Pi, any CPU; GPU providers if the manifest asks for them)."""

from ..errors import EdgeposeError
from ..formats import backend_of_module
from .base import Runtime, check_shapes, fixed_batch, require

BACKEND = backend_of_module(__name__)


class OnnxRuntime(Runtime):
    """An ``onnxruntime.InferenceSession`` behind the common interface."""

    backend = BACKEND.name

    def __init__(self, path, manifest, threads=None):
        Runtime.__init__(self, path, manifest, threads)
        ort = require(BACKEND.packages[0], "pip install onnxruntime")
        self.version = ort.__version__
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        wanted = (manifest.get("runtime") or {}).get("providers") or ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in ort.get_available_providers()]
        if missing:
            # Say so rather than quietly running somewhere else.
            raise EdgeposeError(
                "onnxruntime here lacks {} (available: {})".format(
                    ", ".join(missing), ", ".join(ort.get_available_providers())
                )
            )
        try:
            self.session = ort.InferenceSession(path, sess_options=options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EdgeposeError(
                "onnxruntime cannot load {}: {}".format(path, str(exc).splitlines()[0])
            ) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise EdgeposeError("{} has {} inputs; edgepose models have one".format(path, len(inputs)))
        self.input_name = inputs[0].name
        self.max_batch = fixed_batch(inputs[0].shape)
        outs = self.session.get_outputs()
        self.names = [o.name for o in outs]
        self.mapping = self.match_outputs([(o.name, o.shape) for o in outs])
        check_shapes(
            path, manifest, inputs[0].shape, dict((n, outs[i].shape) for n, i in self.mapping.items())
        )

    def _infer(self, x):
        values = self.session.run(None, {self.input_name: x})
        return {name: values[i] for name, i in self.mapping.items()}


RUNTIME = OnnxRuntime
