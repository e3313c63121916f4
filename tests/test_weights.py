"""Checkpoint loading: every accepted layout round-trips, mismatches and unsafe files are refused."""

import collections

import pytest
import torch

from edgepose.errors import EdgeposeError
from edgepose.models import build_model, load_weights


class NotATensor:  # pickled into a checkpoint to make weights_only=True refuse it
    pass


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
    with pytest.raises(EdgeposeError, match="wrongly shaped: final_refined.0.conv.3.weight"):
        load_weights(build_model("litepose-xs", dataset="crowdpose"), path)


def test_checkpoint_needing_pickled_code_is_refused(trained, tmp_path):
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": trained.state_dict(), "config": NotATensor()}, path)
    with pytest.raises(EdgeposeError, match="refusing .*arbitrary pickled code"):
        load_weights(build_model("litepose-xs"), path)


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
