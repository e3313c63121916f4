"""Load released checkpoints into edgepose models, safely and strictly.

Accepted layouts: a bare state_dict; ``{"state_dict": ...}``, ``{"best_state_dict": ...}`` or
``{"model": ...}`` wrappers; a DataParallel ``module.`` prefix; and whatever a family adds through
``model.remap_checkpoint(state_dict)`` (Lite-HRNet's mmpose-1.x ``head.`` prefix, for example).
mmpose bottom-up checkpoints (``backbone.`` / ``keypoint_head.`` around the official module names)
load into a model whose own keys have no such prefix once those prefixes are stripped.
Files are read with ``torch.load(weights_only=True)``: a checkpoint that needs arbitrary pickled
code is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from edgepose.errors import EdgeposeError

WRAPPER_KEYS = ("state_dict", "best_state_dict", "model", "model_state_dict")
_LIST_LIMIT = 8


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``path`` with ``weights_only=True`` and return its flat tensor state_dict."""
    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        code = pickled_code(str(exc))
        if code is None:  # a corrupt or non-torch file, not a code-carrying one
            raise EdgeposeError(f"cannot read checkpoint {path}: not a valid torch checkpoint") from None
        raise EdgeposeError(
            f"refusing {path}: it needs arbitrary pickled code to load{f' ({code})' if code else ''}, "
            "which torch.load(weights_only=True) does not run. Re-save it as a plain state_dict of "
            "tensors from a trusted environment."
        ) from None
    except Exception as exc:  # truncated zip, wrong format, ...
        first = (str(exc).strip().splitlines() or [""])[0]
        raise EdgeposeError(f"cannot read checkpoint {path}: {type(exc).__name__}: {first}") from None
    return unwrap_state_dict(obj, str(path))


# What torch's weights-only unpickler says when a file asks for code it will not run, in the wordings
# of torch 2.4-2.13 (torch/_weights_only_unpickler.py): a global that is not allow-listed
# ("Unsupported global: GLOBAL x.y was not an allowed global by default"), a global from a blocked
# module such as os.system ("Trying to load unsupported GLOBAL posix.system whose module posix is
# blocked", torch >= 2.6), or an object it may not build or call. A corrupt file says something else
# ("Unsupported operand 100", "invalid load key").
_CODE_GLOBAL = re.compile(r"GLOBAL (\S+?)(?: was not an allowed global| whose module \S+ is blocked)")
_CODE_OTHER = re.compile(
    r"Trying to call reduce for unrecognized function|Can only create new object|Can only build "
    r"|must be imported to load"
)


def pickled_code(message: str) -> str | None:
    """The code a refused checkpoint asked for ('' when torch does not name it), or None if it asked for none."""
    found = _CODE_GLOBAL.search(message)
    if found:
        return found.group(1)
    return "" if _CODE_OTHER.search(message) else None


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensor dict inside the known wrappers and strip a ``module.`` prefix."""
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise EdgeposeError(
                f"{source} holds no state_dict: top-level keys are {sorted(map(str, obj))[:_LIST_LIMIT]}"
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise EdgeposeError(f"{source} is a {type(obj).__name__}, not a state_dict")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _is_tensor_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... (+{len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def match_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply the family's key mapping and check keys and shapes; raise one clear error on mismatch."""
    remap = getattr(model, "remap_checkpoint", None)
    if callable(remap):
        state = remap(dict(state))
    expected = model.state_dict()
    state = _strip_mmpose_prefixes(state, expected)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} wrongly shaped: {_listing(wrong)}")
        raise EdgeposeError(f"checkpoint does not fit {name}: " + "; ".join(parts) + _released_hint(model))
    return dict(state)


MMPOSE_PREFIXES = ("backbone.", "keypoint_head.")


def _strip_mmpose_prefixes(
    state: Mapping[str, torch.Tensor], expected: Mapping
) -> Mapping[str, torch.Tensor]:
    """mmpose's ``backbone.`` / ``keypoint_head.`` wrapping, removed for a model whose keys have none."""
    if not state or any(k.startswith(MMPOSE_PREFIXES) for k in expected):
        return state
    if not all(k.startswith(MMPOSE_PREFIXES) for k in state):
        return state
    return {k.split(".", 1)[1]: v for k, v in state.items()}


def _released_hint(model: nn.Module) -> str:
    """'; released weights for litepose-xs (crowdpose): litepose-xs-crowdpose' (or nothing)."""
    name = getattr(getattr(model, "spec", None), "name", None)
    if name is None:
        return ""
    from edgepose.models.catalog import load_catalog  # data only; imported late to keep this module light

    try:
        catalog = load_catalog()
    except EdgeposeError:  # a broken user catalog must not hide the real error
        return ""
    dataset = getattr(model, "dataset", None)
    fits = catalog.for_model(name, dataset) or catalog.for_model(name)
    what = f"{name} ({dataset})" if dataset and catalog.for_model(name, dataset) else name
    if not fits:
        return f"; no released weights fit {what}"
    return f"; released weights for {what}: {', '.join(e.name for e in fits)}"


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` with ``strict=True``; returns the model."""
    state = match_state_dict(model, read_checkpoint(path))
    model.load_state_dict(state, strict=True)
    return model
