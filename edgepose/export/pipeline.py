"""``export_model``: model + recipe -> one artifact folder (model file, manifest.json, device code).

The pipeline builds the registered model, loads weights, resolves the recipe against the flags, and
hands an immutable :class:`ExportJob` to the format's lowering (``lower(job) -> fragment``, the module
named by the format table, imported lazily). The lowering writes its model file into ``job.stage``
after checking it against PyTorch; the pipeline then writes manifest.json (docs/manifest.md), copies
the device package and launchers, and publishes the staging folder at ``--out`` (:func:`edgepose.atomic.staged_dir`:
an existing folder is swapped out atomically, and only if it is an edgepose artifact holding nothing but
what edgepose wrote, or with ``force``). Any failure, Ctrl-C included, leaves no folder and the old one as
it was.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import edgepose
from edgepose.atomic import staged_dir, write_text
from edgepose.device.formats import get_format, model_files
from edgepose.device.manifest import MANIFEST, SCHEMA, load_manifest, sha256_of
from edgepose.device.preprocess import INPUT_NORMALIZATION
from edgepose.device.segmentation_classes import get_classes
from edgepose.device.skeletons import get_skeleton
from edgepose.errors import EdgeposeError
from edgepose.export import parity
from edgepose.export.recipe import Recipe, load_recipe, resolve
from edgepose.hub import ResolvedWeights, resolve_weights
from edgepose.models import build_seeded, check_input_size, get_spec, load_weights, parse_size
from edgepose.models.registry import ModelSpec, OutputSpec, head_size

DEVICE_PACKAGE = Path(edgepose.__file__).resolve().parent / "device"
MEANINGS = {
    "heatmaps_tags": "channels 0..J-1: heatmaps; J..2J-1: associative-embedding tags",
    "heatmaps": "J heatmaps",
    "logits": "C class scores per pixel (before softmax); the label is the argmax over the channels",
}
# One thread: an export is a handful of forward passes, and PyTorch's OpenMP threads slow down 10-100x when
# other processes share the cores (pytest -n 2, a benchmark next door); one thread is never that slow.
EXPORT_THREADS = 1
RANDOM_SEED = 0  # random weights are seeded: the same command gives the same file
RANDOM_WEIGHTS = {"kind": "random", "seed": RANDOM_SEED, "note": "random weights: the outputs mean nothing"}
RUN_PY = """\
import os, sys; HERE = os.path.dirname(os.path.abspath(__file__)); sys.path.insert(0, HERE); \
from edgepose_device.cli import main; sys.exit(main(model_dir=HERE))
"""


@dataclass(frozen=True)
class ExportJob:
    """Everything a format's ``lower(job)`` needs (immutable); it writes its files into ``stage``."""

    model_name: str
    model: nn.Module  # eval mode, weights loaded, not folded: the parity reference
    spec: ModelSpec
    dataset: str
    input_size: tuple[int, int]  # (H, W)
    recipe: Recipe  # resolved: flags applied
    stage: Path
    weights: ResolvedWeights | None = None  # None: seeded random weights
    calib: Path | None = None
    build: bool = False

    @property
    def precision(self) -> str:
        return self.recipe.precision

    @property
    def head_size(self) -> int:
        """Joints (pose) or classes (segmentation): what the head's channels count (``spec.head_option``)."""
        return head_size(self.spec, self.dataset, getattr(self.model, self.spec.head_option, None))

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.spec.outputs]

    @property
    def heatmap_channels(self) -> dict[str, int]:
        """Leading heatmap channels per output (J), for peak agreement."""
        return {o.name: self.head_size for o in self.spec.outputs}

    @property
    def output_roles(self) -> dict[str, str]:
        """Each output's role, which picks its agreement figure in the parity gate."""
        return {o.name: o.role for o in self.spec.outputs}

    def figures(self, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, dict]:
        """Per-output parity figures of ``candidate`` against ``reference`` (no thresholds)."""
        return {
            name: parity.output_figures(
                reference[name], candidate[name], self.heatmap_channels[name], self.output_roles[name]
            )
            for name in self.output_names
        }

    def sample(self, batch: int = 1, layout: str = "NCHW") -> np.ndarray:
        """The parity input (a real photo) at this job's input size."""
        return parity.sample_input(self.input_size, layout=layout, batch=batch)

    def _outputs(self, model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = model(x)
        out = out if isinstance(out, tuple | list) else (out,)
        if len(out) != len(self.spec.outputs):
            raise EdgeposeError(
                f"{self.model_name} returned {len(out)} outputs, its spec lists {len(self.spec.outputs)}"
            )
        return {name: t.numpy() for name, t in zip(self.output_names, out)}

    def run_torch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """PyTorch fp32 outputs of the unfolded model for an NCHW batch, keyed by output name."""
        reference = self._outputs(self.model, torch.from_numpy(x))
        for o in self.spec.outputs:  # the manifest states these shapes: hold the spec to them
            if list(reference[o.name].shape) != self.output_shape(o, len(x)):
                raise EdgeposeError(
                    f"{self.model_name} output {o.name} is {list(reference[o.name].shape)}, "
                    f"its spec implies {self.output_shape(o, len(x))}"
                )
        return reference

    def run_torch64(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The same outputs computed in float64 (a copy of the model), to measure fp32 rounding noise."""
        return self._outputs(copy.deepcopy(self.model).double(), torch.from_numpy(x).double())

    def check(
        self,
        candidate: dict[str, np.ndarray],
        x: np.ndarray,
        reference: dict[str, np.ndarray] | None = None,
        floor: parity.Floor | None = None,
    ) -> dict:
        """Gate ``candidate`` outputs on ``x`` against PyTorch fp32 under the recipe's limits for this precision.

        The float64 run that measures PyTorch's own fp32 noise is made only when it can change the
        verdict: an absolute ``max_abs_diff`` bar was missed.
        """
        reference = self.run_torch(x) if reference is None else reference
        limits, channels, roles = self.recipe.parity, self.heatmap_channels, self.output_roles
        verdict = parity.gate(reference, candidate, limits, channels, floor=floor, roles=roles)
        if not verdict["passed"] and "max_abs_diff" in limits:
            noise = parity.noise_floor(reference, self.run_torch64(x))
            verdict = parity.gate(reference, candidate, limits, channels, noise, floor, roles)
        return verdict

    def output_shape(self, output: OutputSpec, batch: int = 1) -> list[int]:
        """NCHW shape of one output, from the spec (parity checks the real shapes against it)."""
        h, w = self.input_size
        channels = output.channels_per_joint * self.head_size
        return [batch, channels, h // output.stride, w // output.stride]


def resolve_source(
    spec: ModelSpec,
    weights: str | os.PathLike | None,
    dataset: str | None,
    input_size: tuple[int, int] | None,
) -> tuple[ResolvedWeights | None, str | None, tuple[int, int]]:
    """The weights, dataset and input size a model is built with: what is given, else what the
    released checkpoint fits (a catalog name), else the paper's size (the input size checked)."""
    used = resolve_weights(weights, model=spec.name, dataset=dataset) if weights else None
    released = used.entry if used is not None else None
    dataset = dataset or (released.dataset if released else None)
    height, width = input_size or (released.input_size if released else spec.input_size)
    check_input_size(spec, height, width)
    return used, dataset, (height, width)


def export_model(
    model_name: str,
    target: str | os.PathLike | Recipe,
    *,
    dataset: str | None = None,
    weights: str | os.PathLike | None = None,
    input_size: tuple[int, int] | str | None = None,
    precision: str | None = None,
    opset: int | None = None,
    dynamic_batch: bool | None = None,
    calib: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    build: bool = False,
    force: bool = False,
) -> Path:
    """Export ``model_name`` for ``target`` (a recipe name, path or object); return the artifact folder.

    ``out`` may already exist only as an edgepose artifact folder (it is then replaced); ``force``
    replaces whatever is there.

    ``weights``: a checkpoint file, or the name of a released checkpoint (``edgepose weights``; downloaded
    on first use), whose dataset and input size then become the defaults. None: seeded random weights.
    """
    spec = get_spec(model_name)
    recipe = target if isinstance(target, Recipe) else load_recipe(target)
    recipe = resolve(recipe, precision=precision, opset=opset, dynamic_batch=dynamic_batch, kind=spec.kind)
    if isinstance(input_size, str):
        input_size = parse_size(input_size)
    used, dataset, (height, width) = resolve_source(spec, weights, dataset, input_size)
    lowering = _import_lowering(recipe.format)
    replaceable = _replace_anything if force else check_replaceable
    if out and os.path.lexists(out):
        replaceable(Path(out))  # refuse before the slow part; staged_dir checks again under its lock

    model = build_seeded(model_name, RANDOM_SEED, dataset=dataset)
    if used is not None:
        load_weights(model, used.path)
    model.eval()
    calib_path = Path(calib) if calib else None
    if calib_path is not None and not calib_path.exists():
        raise EdgeposeError(f"calibration data not found: {calib_path}")

    final = (
        Path(out)
        if out
        else Path("artifacts") / recipe.folder_name(model_name, model.dataset, (height, width))
    )
    with staged_dir(final, replaceable) as stage, torch_threads(EXPORT_THREADS):
        job = ExportJob(
            model_name=model_name,
            model=model,
            spec=spec,
            dataset=model.dataset,
            input_size=(height, width),
            recipe=recipe,
            stage=stage,
            weights=used,
            calib=calib_path,
            build=build,
        )
        fragment = lowering.lower(job)
        # edgepose.accuracy: the artifact vs PyTorch, decoded alike, on the parity photo -> parity.agreement
        from edgepose.accuracy.export_check import with_agreement

        fragment = with_agreement(job, fragment)
        shutil.copytree(
            DEVICE_PACKAGE, stage / "edgepose_device", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        write_text(stage / "run.py", RUN_PY)
        manifest = build_manifest(job, fragment)
        write_text(stage / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return final


def check_replaceable(path: Path) -> None:
    """Raise unless ``path`` is an edgepose artifact folder holding only files edgepose wrote.

    "Edgepose wrote" = its manifest.json (our schema) lists the file, or it is one the device side makes
    there (a built engine, its sidecar, a calibration cache, the bench's records, ``__pycache__``).
    """
    from edgepose.bench.runner import TIMER_RECORDS
    from edgepose.device.build_engine import SIDECAR
    from edgepose.device.trtexec_build import CALIB_CACHE

    force = "pass --force to replace it anyway"
    if not path.is_dir() or path.is_symlink():
        raise EdgeposeError(
            f"--out {path} exists and is not an artifact folder: choose another --out, or {force}"
        )
    try:
        listed = set(load_manifest(str(path)).get("artifacts") or {})
    except EdgeposeError:
        raise EdgeposeError(
            f"--out {path} exists and is not an edgepose artifact folder (no edgepose manifest.json): "
            f"choose another --out, or {force}"
        ) from None
    known = listed | {MANIFEST, SIDECAR, CALIB_CACHE, TIMER_RECORDS, *model_files()}
    foreign = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if (p.is_symlink() or not p.is_dir())
        and "__pycache__" not in p.parts
        and p.relative_to(path).as_posix() not in known
    )
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise EdgeposeError(
            f"--out {path} is an artifact folder, but edgepose did not write {', '.join(foreign[:3])}{more}: "
            f"move them out, or {force}"
        )


def _replace_anything(path: Path) -> None:
    """``--force``: whatever is at ``--out`` may be replaced."""


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` PyTorch threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _import_lowering(fmt: str):
    try:
        return importlib.import_module(get_format(fmt).lowering)
    except ModuleNotFoundError as exc:
        raise EdgeposeError(
            f"the {fmt} exporter needs a package that is not installed: {exc.name}"
            " (install edgepose with the 'export' extra)"
        ) from None


def artifact_table(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in ``folder`` except manifest.json, by relative POSIX path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {
        p.relative_to(folder).as_posix(): {"sha256": sha256_of(p), "bytes": p.stat().st_size} for p in files
    }


def _macs(model: nn.Module, input_size: tuple[int, int]) -> dict | None:
    try:
        from edgepose.macs import count_macs
    except ImportError:  # the MAC counter is optional for export
        return None
    report = count_macs(model, input_size=input_size)
    return {"true": report.true_macs, "paper": report.paper_macs, "paper_convention": report.paper_convention}


def _joints(job: ExportJob) -> dict[str, Any]:
    skeleton = get_skeleton(job.dataset)
    return {
        "num_joints": job.head_size,
        "joints": skeleton["joints"],
        "flip_index": skeleton["flip_index"],
        "limbs": skeleton["limbs"],
    }


def _classes(job: ExportJob) -> dict[str, Any]:
    labels = get_classes(job.dataset)
    if job.head_size != len(labels["classes"]):
        raise EdgeposeError(
            f"{job.model_name} has {job.head_size} classes, {job.dataset} names {len(labels['classes'])}"
        )
    return {
        "num_classes": job.head_size,
        "classes": list(labels["classes"]),
        "palette_rgb": [list(rgb) for rgb in labels["palette_rgb"]],
        "ignore_label": labels["ignore"],
    }


# What the head's channels mean, by the spec's head option: the keypoint set (pose) or the label set
# (segmentation: class names and the display colours the device-side overlay uses).
LABELS = {"num_joints": _joints, "num_classes": _classes}


def model_section(job: ExportJob) -> dict[str, Any]:
    """The manifest's ``model``: identity, keypoint set or label set, size, weights."""
    return {
        "name": job.model_name,
        "family": job.spec.family,
        "kind": job.spec.kind,
        "paper": job.spec.paper,
        "dataset": job.dataset,
        **LABELS[job.spec.head_option](job),
        "params": sum(p.numel() for p in job.model.parameters()),
        "macs": _macs(job.model, job.input_size),
        "weights": job.weights.manifest_record() if job.weights else RANDOM_WEIGHTS,
    }


def io_sections(job: ExportJob) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Default ``input`` and ``outputs`` (NCHW float32, batch 1); a lowering may override fields."""
    h, w = job.input_size
    inp = {
        "name": "input",
        "shape": [1, 3, h, w],
        "layout": "NCHW",
        "dtype": "float32",
        **INPUT_NORMALIZATION,
        "quantization": None,
    }
    outs = [
        {
            "name": o.name,
            "role": o.role,
            "stride": o.stride,
            "shape": job.output_shape(o),
            "layout": "NCHW",
            "dtype": "float32",
            "quantization": None,
            "meaning": MEANINGS.get(o.role, o.role),
        }
        for o in job.spec.outputs
    ]
    return inp, outs


def build_manifest(job: ExportJob, fragment: dict[str, Any]) -> dict[str, Any]:
    """Assemble manifest.json from the job and the lowering's fragment (docs/manifest.md)."""
    inp, outs = io_sections(job)
    inp.update(fragment.get("input", {}))
    overrides = {o["name"]: o for o in fragment.get("outputs", [])}
    outs = [{**o, **overrides.get(o["name"], {})} for o in outs]
    export = {"dynamic_batch": job.recipe.dynamic_batch, **fragment.get("export", {})}
    export["recipe"] = job.recipe.to_dict()
    tools = {
        "edgepose": edgepose.__version__,
        "torch": torch.__version__.split("+")[0],
        "numpy": np.__version__,
        "python": platform.python_version(),
        **fragment.get("tools", {}),
    }
    manifest = {
        "schema": SCHEMA,
        "edgepose_version": edgepose.__version__,
        "model": model_section(job),
        "input": inp,
        "outputs": outs,
        "format": job.recipe.format,
        "precision": job.precision,
        "target": job.recipe.name,
        "runtime": {**job.recipe.runtime.to_dict(), **fragment.get("runtime", {})},
        "artifacts": artifact_table(job.stage),
        "export": export,
        "tools": tools,
        "parity": fragment.get("parity"),
    }
    if "engine" in fragment:  # settings the device's engine builder reads (build_engine.py, trtexec.sh)
        manifest["engine"] = fragment["engine"]
    return manifest
