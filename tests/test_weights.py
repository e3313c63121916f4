"""Checkpoint loading: every accepted layout round-trips, mismatches and unsafe files are refused."""

import collections
import functools
import os

import pytest
import torch

from edgepose.errors import EdgeposeError
from edgepose.models import build_model, load_weights
from edgepose.models.weights import pickled_code, read_checkpoint


class NotATensor:  # pickled into a checkpoint to make weights_only=True refuse it
    pass


class RunsACommand:  # what a malicious checkpoint carries: unpickling it would run a shell command
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.fixture(scope="module")
def trained():
    """A LitePose-XS with random, non-default weights and BN statistics."""
    torch.manual_seed(0)
    model = build_model("litepose-xs")
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.2 + 0.9 if t.dim() == 1 else torch.randn_like(t) * 0.05)
    return model


def _layouts(state):
    module = collections.OrderedDict(("module." + k, v) for k, v in state.items())
    return {
        "bare": state,
        "module-prefix": module,
        "state_dict-wrapper": {"state_dict": state},
        "best_state_dict-wrapper": {"best_state_dict": state, "perf": 0.5},
        # dist_train.py checkpoint.pth.tar: DDP state_dict with `module.` plus training state.
        "dist_train-checkpoint": {"epoch": 3, "model": "pose_mobilenet", "state_dict": module, "perf": 0.1},
        "model-wrapper": {"model": state, "epoch": 7},
        # The PyTorch tutorial's training checkpoint: the optimizer's state sits beside the model's.
        "model_state_dict-wrapper": {
            "epoch": 2,
            "model_state_dict": state,
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
            "loss": 0.25,
        },
        # mmcv's save_checkpoint (Lite-HRNet, mmpose): meta + state_dict (+ optimizer).
        "mmcv-checkpoint": {"meta": {"epoch": 210, "mmcv_version": "1.3.8"}, "state_dict": state},
        # Wrappers nest: a {"model": ...} whose value is itself a DDP {"state_dict": ...}.
        "nested-wrappers": {"model": {"state_dict": module}},
    }


@pytest.mark.parametrize("layout", list(_layouts({})))
def test_round_trip_through_each_accepted_layout(trained, tmp_path, layout):
    path = tmp_path / f"{layout}.pth"
    torch.save(_layouts(trained.state_dict())[layout], path)
    fresh = load_weights(build_model("litepose-xs"), path)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(trained(x), fresh(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_mismatch_lists_missing_unexpected_and_wrong_shapes(trained, tmp_path):
    state = dict(trained.state_dict())
    state.pop("first.0.0.weight")
    state["extra.weight"] = torch.zeros(1)
    state["deconv_raw.0.weight"] = torch.zeros(1, 2, 4, 4)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(EdgeposeError) as err:
        load_weights(build_model("litepose-xs"), path)
    msg = str(err.value)
    assert "1 missing: first.0.0.weight" in msg
    assert "1 unexpected: extra.weight" in msg
    assert "deconv_raw.0.weight (1, 2, 4, 4) != (48, 16, 4, 4)" in msg
    assert "\n" not in msg


def test_coco_checkpoint_into_crowdpose_model_is_a_shape_error(tmp_path):
    path = tmp_path / "coco.pth"
    torch.save(build_model("litepose-xs", dataset="coco").state_dict(), path)
    with pytest.raises(EdgeposeError, match="wrongly shaped: final_refined.0.conv.3.weight") as err:
        load_weights(build_model("litepose-xs", dataset="crowdpose"), path)
    # ... and names the released checkpoints that do fit
    assert str(err.value).endswith("; released weights for litepose-xs (crowdpose): litepose-xs-crowdpose")


def test_mismatch_names_released_weights_of_the_model(tmp_path):
    path = tmp_path / "xs.pth"
    torch.save(build_model("litepose-xs").state_dict(), path)
    with pytest.raises(EdgeposeError) as err:
        load_weights(build_model("litepose-s", dataset="coco"), path)
    assert str(err.value).endswith("; released weights for litepose-s (coco): litepose-s-coco")
    with pytest.raises(EdgeposeError) as err:
        load_weights(build_model("higherhrnet-w16"), path)
    assert str(err.value).endswith("; no released weights fit higherhrnet-w16")


@pytest.mark.parametrize(
    "payload, named",
    [
        (lambda marker: NotATensor(), "test_weights.NotATensor"),
        (lambda marker: RunsACommand(marker), "system"),  # torch 2.13: "module posix is blocked"
        (lambda marker: CallsEval(), "eval"),
        (lambda marker: functools.partial(print, "hi"), "functools.partial"),
    ],
    ids=["class-instance", "os.system", "builtins.eval", "functools.partial"],
)
def test_checkpoint_needing_pickled_code_is_refused_with_advice(trained, tmp_path, payload, named):
    marker = tmp_path / "executed"
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": trained.state_dict(), "config": payload(marker)}, path)
    with pytest.raises(EdgeposeError) as err:
        load_weights(build_model("litepose-xs"), path)
    msg = str(err.value)
    assert msg.startswith(f"refusing {path}: it needs arbitrary pickled code to load (")
    assert named in msg.split("(", 1)[1].split(")", 1)[0]
    assert "Re-save it as a plain state_dict of tensors" in msg
    assert "not a valid torch checkpoint" not in msg
    assert "\n" not in msg
    assert not marker.exists()  # nothing ran


@pytest.mark.parametrize(
    "message, expected",
    [
        # torch 2.6-2.13, a global that is not allow-listed
        (
            "Weights only load failed. ... WeightsUnpickler error: Unsupported global: GLOBAL "
            "argparse.Namespace was not an allowed global by default. Please use "
            "`torch.serialization.add_safe_globals([argparse.Namespace])` or the ...",
            "argparse.Namespace",
        ),
        # torch 2.4/2.5 wording (short name in the advice)
        (
            "Unsupported global: GLOBAL numpy.core.multiarray.scalar was not an allowed global by "
            "default. Please use `torch.serialization.add_safe_globals([scalar])` to allowlist this global",
            "numpy.core.multiarray.scalar",
        ),
        # torch 2.6+: os / sys / posix / nt are blocked outright
        (
            "Weights only load failed. In PyTorch 2.6, ...\n\n\nTrying to load unsupported GLOBAL "
            "posix.system whose module posix is blocked.\n\nCheck the documentation",
            "posix.system",
        ),
        ("Can only build Tensor, Parameter, OrderedDict or types allowlisted via `add_safe_globals`", ""),
        ("Trying to call reduce for unrecognized function <built-in function exec>", ""),
        # corrupt files: no code involved
        ("Weights only load failed. ... WeightsUnpickler error: \n\nUnsupported operand 100\n\n", None),
        ("invalid load key, 'd'.", None),
    ],
)
def test_pickled_code_reads_each_torch_wording(message, expected):
    assert pickled_code(message) == expected


def test_mmpose_bottom_up_prefixes_are_stripped(tmp_path):
    """mmpose wraps the official HigherHRNet names in backbone. / keypoint_head.; they load once stripped."""
    torch.manual_seed(1)
    source = build_model("higherhrnet-w16", dataset="coco")
    head = ("final_layers.", "deconv_layers.")
    state = {
        ("keypoint_head." if k.startswith(head) else "backbone.") + k: v
        for k, v in source.state_dict().items()
    }
    path = tmp_path / "higher_hrnet16_mmpose.pth"
    torch.save({"meta": {"epoch": 300}, "state_dict": state}, path)
    loaded = load_weights(build_model("higherhrnet-w16", dataset="coco"), path).state_dict()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_lite_hrnet_keeps_its_own_backbone_prefix(tmp_path):
    """Lite-HRNet's own keys start with backbone.: nothing is stripped, a bare backbone is a mismatch."""
    state = build_model("litehrnet-18").state_dict()
    path = tmp_path / "stripped.pth"
    torch.save({k.split(".", 1)[1]: v for k, v in state.items()}, path)
    with pytest.raises(EdgeposeError, match="checkpoint does not fit litehrnet-18: .* missing: backbone"):
        load_weights(build_model("litehrnet-18"), path)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(EdgeposeError, match="checkpoint not found"):
        load_weights(build_model("litepose-xs"), tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(EdgeposeError, match="cannot read checkpoint"):
        load_weights(build_model("litepose-xs"), garbage)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(EdgeposeError, match="holds no state_dict"):
        load_weights(build_model("litepose-xs"), empty)


def test_key_listings_show_eight_then_count_the_rest():
    from edgepose.models.weights import _listing

    keys = [f"k{i}" for i in range(10)]
    assert _listing(keys[:8]) == "k0, k1, k2, k3, k4, k5, k6, k7"
    assert _listing(keys[:9]) == "k0, k1, k2, k3, k4, k5, k6, k7, ... (+1 more)"
    assert _listing(keys) == "k0, k1, k2, k3, k4, k5, k6, k7, ... (+2 more)"
    assert _listing([]) == ""


def test_released_hint_without_a_release_for_the_dataset_names_the_models_others(tmp_path):
    path = tmp_path / "empty.pth"
    torch.save({"nothing.weight": torch.zeros(1)}, path)
    with pytest.raises(EdgeposeError) as err:  # LitePose-XS was released for CrowdPose only
        load_weights(build_model("litepose-xs", dataset="coco"), path)
    assert str(err.value).endswith("; released weights for litepose-xs: litepose-xs-crowdpose")
    # A model with a spec but no dataset attribute: the model's releases, without a dataset.
    bare = torch.nn.Linear(2, 2)
    bare.spec = type("Spec", (), {"name": "litepose-xs"})()
    with pytest.raises(EdgeposeError) as err:
        load_weights(bare, path)
    assert str(err.value).endswith("; released weights for litepose-xs: litepose-xs-crowdpose")


def test_no_hint_for_an_unnamed_model_or_a_broken_catalog(tmp_path, monkeypatch):
    path = tmp_path / "empty.pth"
    torch.save({"nothing.weight": torch.zeros(1)}, path)
    with pytest.raises(EdgeposeError) as err:
        load_weights(torch.nn.Linear(2, 2), path)
    assert str(err.value) == (
        "checkpoint does not fit Linear: 2 missing: weight, bias; 1 unexpected: nothing.weight"
    )
    from edgepose.models import catalog

    def broken():
        raise EdgeposeError("bad catalog")

    monkeypatch.setattr(catalog, "load_catalog", broken)
    with pytest.raises(EdgeposeError) as err:
        load_weights(build_model("litepose-xs"), path)
    assert str(err.value).endswith("nothing.weight")  # the real error, nothing after it


def test_litehrnet_loads_its_own_and_the_mmpose_1x_layout(tmp_path):
    """Lite-HRNet's own keys start with backbone./keypoint_head. (nothing to strip); mmpose 1.x says head."""
    model = build_model("litehrnet-18", dataset="coco")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    head = "keypoint_head.final_layer.weight"
    state[head] = state[head] * 2 + 1  # a visible change
    torch.save(state, tmp_path / "own.pth")
    load_weights(model, tmp_path / "own.pth")
    assert torch.equal(model.state_dict()[head], state[head])
    mmpose1 = {
        ("head." + k[len("keypoint_head.") :] if k.startswith("keypoint_head.") else k): v
        for k, v in state.items()
    }
    mmpose1[head.replace("keypoint_head.", "head.")] = state[head] * 3
    mmpose1["data_preprocessor.mean"] = torch.zeros(3)
    torch.save(mmpose1, tmp_path / "mmpose1.pth")
    load_weights(model, tmp_path / "mmpose1.pth")
    assert torch.equal(model.state_dict()[head], state[head] * 3)
    # A mismatch lists every released checkpoint of the model and dataset, comma-separated.
    torch.save({"x.weight": torch.zeros(1)}, tmp_path / "none.pth")
    with pytest.raises(EdgeposeError) as err:
        load_weights(model, tmp_path / "none.pth")
    assert str(err.value).endswith(
        "; released weights for litehrnet-18 (coco): litehrnet-18-coco-256x192, litehrnet-18-coco-384x288, "
        "litehrnet-18-coco-256x192-official, litehrnet-18-coco-384x288-official"
    )


def test_missing_keys_alone_are_a_mismatch(tmp_path):
    state = build_model("litepose-xs").state_dict()
    del state["first.0.0.weight"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(
        EdgeposeError, match=r"checkpoint does not fit litepose-xs: 1 missing: first\.0\.0\.weight;"
    ):
        load_weights(build_model("litepose-xs"), tmp_path / "short.pth")


def test_unreadable_checkpoints_say_why_in_one_line(tmp_path, monkeypatch):
    from edgepose.models import weights

    path = tmp_path / "cut.pth"
    torch.save(build_model("litepose-xs").state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a download cut in half: no zip directory at the end
    with pytest.raises(EdgeposeError) as err:
        load_weights(build_model("litepose-xs"), path)
    assert str(err.value).startswith(
        f"cannot read checkpoint {path}: RuntimeError: PytorchStreamReader failed"
    )
    for raised, said in [(ValueError("first\nsecond"), "ValueError: first"), (KeyError(), "KeyError: ")]:
        monkeypatch.setattr(
            weights.torch, "load", lambda *a, raised=raised, **k: (_ for _ in ()).throw(raised)
        )
        with pytest.raises(EdgeposeError) as err:
            weights.read_checkpoint(path)
        assert str(err.value) == f"cannot read checkpoint {path}: {said}"
    # Code torch will not run, without a name for it: no empty parentheses.
    import pickle

    refused = pickle.UnpicklingError("Can only build Tensor, Parameter or OrderedDict objects")
    monkeypatch.setattr(weights.torch, "load", lambda *a, **k: (_ for _ in ()).throw(refused))
    with pytest.raises(EdgeposeError) as err:
        weights.read_checkpoint(path)
    assert str(err.value).startswith(f"refusing {path}: it needs arbitrary pickled code to load, which ")


def test_a_checkpoint_that_is_no_mapping_is_named(tmp_path):
    from edgepose.models.weights import unwrap_state_dict

    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(EdgeposeError, match=f"^{tmp_path / 'list.pth'} is a list, not a state_dict$"):
        load_weights(build_model("litepose-xs"), tmp_path / "list.pth")
    with pytest.raises(EdgeposeError, match="^checkpoint is a int, not a state_dict$"):
        unwrap_state_dict(3)


def test_a_checkpoint_saved_on_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    # A checkpoint saved from a GPU training run names "cuda:0" for its storages. Without
    # map_location="cpu" torch.load refuses them on a machine with no GPU (and, with one, would put the
    # tensors there). torch.save records the location from location_tag: pretend it said "cuda:0".
    import torch.serialization

    path = tmp_path / "gpu.pth"
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save({"conv.weight": torch.arange(6.0).reshape(2, 3)}, path)
    state = read_checkpoint(path)
    assert state["conv.weight"].device.type == "cpu"
    assert state["conv.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_torch_force_no_weights_only_load_in_the_environment_does_not_open_the_door(
    trained, tmp_path, monkeypatch
):
    # torch.load honours TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 only where the caller left weights_only unset:
    # edgepose sets it, so a checkpoint carrying a command is still refused and nothing runs.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "executed"
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": trained.state_dict(), "config": RunsACommand(marker)}, path)
    with pytest.raises(EdgeposeError, match=f"^refusing {path}: it needs arbitrary pickled code"):
        load_weights(build_model("litepose-xs"), path)
    assert not marker.exists()
