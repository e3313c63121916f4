"""The interface every backend implements, plus the layout, batching and (de)quantisation they share."""

import importlib
import os

import numpy as np

from ..errors import EdgeposeError


class Runtime(object):
    """Run an exported model: ``run(batch NCHW float32) -> {output name: NCHW float32}``.

    A backend subclass sets ``backend``, ``version`` and ``max_batch`` (None: any batch size) and
    implements ``_infer(x)``, which takes one batch in the model's input layout (float32) and returns
    ``{name: array in the model's layout}`` already dequantised to float32.
    """

    backend = "none"
    version = ""
    max_batch = 1

    def __init__(self, path, manifest, threads=None):
        self.path = path
        self.manifest = manifest
        self.input_spec = manifest["input"]
        self.output_specs = list(manifest["outputs"])
        self.threads = threads

    def run(self, batch):
        """Run an (N, 3, H, W) float32 batch, splitting it when the model has a fixed batch size."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise EdgeposeError("expected an NCHW batch, got shape {}".format(batch.shape))
        if self.input_spec.get("layout", "NCHW") == "NHWC":
            batch = batch.transpose(0, 2, 3, 1)
        step = self.max_batch or len(batch)
        parts = [self._infer(np.ascontiguousarray(batch[i : i + step])) for i in range(0, len(batch), step)]
        outputs = {}
        for spec in self.output_specs:
            name = spec["name"]
            value = np.concatenate([p[name] for p in parts], axis=0) if len(parts) > 1 else parts[0][name]
            if spec.get("layout", "NCHW") == "NHWC":
                value = value.transpose(0, 3, 1, 2)
            outputs[name] = np.ascontiguousarray(value, dtype=np.float32)
        return outputs

    def describe(self):
        """A short label such as 'onnxruntime 1.31.1 (2 threads)' for logs and JSON lines."""
        threads = " ({} threads)".format(self.threads) if self.threads else ""
        return "{} {}{}".format(self.backend, self.version, threads).strip()

    def _infer(self, x):
        raise NotImplementedError

    def match_outputs(self, found):
        """Map manifest output names to the model's outputs.

        ``found`` is a list of (name, shape) as the model reports them. Names are matched exactly; a
        converter that renamed them (TFLite) is matched by a unique shape instead, else it is an error.
        """
        names = [n for n, _ in found]
        mapping = {}
        for spec in self.output_specs:
            if spec["name"] in names:
                mapping[spec["name"]] = names.index(spec["name"])
                continue
            want = [int(d) for d in spec["shape"][1:]]
            same = [i for i, (_, shape) in enumerate(found) if [int(d) for d in list(shape)[1:]] == want]
            if len(same) != 1:
                raise EdgeposeError(
                    "cannot find output {!r} (shape {}) among the model's outputs {}".format(
                        spec["name"], spec["shape"], found
                    )
                )
            mapping[spec["name"]] = same[0]
        return mapping


def check_shapes(path, manifest, input_shape, output_shapes):
    """Refuse a model whose real input or output shapes are not the manifest's; one line per difference.

    ``input_shape`` and ``output_shapes`` ({manifest output name: shape}) are what the loaded model
    reports, in its own layout (as the manifest records them). A dynamic dimension (None, a name, -1)
    matches anything. manifest.json cannot list its own sha256, so this is what catches an edited one
    before a runtime fails mid-run with its own message.
    """
    problems = []
    pairs = [("input " + manifest["input"].get("name", "input"), input_shape, manifest["input"]["shape"])]
    pairs += [
        ("output " + o["name"], output_shapes.get(o["name"]), o["shape"])
        for o in manifest["outputs"]
        if o["name"] in output_shapes
    ]
    for what, real, wanted in pairs:
        if not _same_shape(real, wanted):
            problems.append(
                "{} of {} is {}, but manifest.json says {}".format(
                    what, os.path.basename(path), _show(real), _show(wanted)
                )
            )
    if problems:
        problems[-1] += ": manifest.json was edited or belongs to another model; export the folder again"
        raise EdgeposeError("\n".join(problems))


def _dynamic(dim):
    return not isinstance(dim, (int, np.integer)) or int(dim) < 0


def _same_shape(real, wanted):
    if real is None or wanted is None or len(real) != len(wanted):
        return False
    return all(_dynamic(r) or _dynamic(w) or int(r) == int(w) for r, w in zip(real, wanted))


def _show(shape):
    return "[{}]".format(", ".join("?" if _dynamic(d) else str(int(d)) for d in (shape or [])))


def require(module, hint):
    """Import ``module`` or raise one clear line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EdgeposeError("{} is not installed ({}): {}".format(module.split(".")[0], exc, hint)) from None


def quantize(x, scale, zero_point, dtype):
    """Float -> integer tensor with the model's own (scale, zero_point)."""
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    """Integer tensor -> float32 with the model's own (scale, zero_point)."""
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def fixed_batch(shape):
    """The model's fixed batch size, or None when the first dimension is dynamic."""
    first = shape[0] if len(shape) else None
    return first if isinstance(first, int) and first > 0 else None
