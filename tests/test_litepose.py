"""LitePose: exact parameter counts, output shapes, state_dict layout and input-size checks."""

import pytest
import torch

from edgepose.errors import EdgeposeError
from edgepose.models import build_model, get_spec, list_models

# Exact counts of the official code (litepose.md §1.5).
PARAMS = {
    ("litepose-xs", "crowdpose"): 1_675_552,
    ("litepose-s", "crowdpose"): 2_731_240,
    ("litepose-m", "crowdpose"): 3_533_808,
    ("litepose-l", "crowdpose"): 5_738_120,
    ("litepose-xs", "coco"): 1_675_912,
    ("litepose-s", "coco"): 2_731_624,
    ("litepose-m", "coco"): 3_534_336,
    ("litepose-l", "coco"): 5_738_672,
}
# (img, C0, stage widths, deconv widths) from the released search-*.json (litepose.md §1.3).
ARCH = {
    "litepose-xs": (256, 16, (16, 32, 48, 80), (16, 24, 24)),
    "litepose-s": (448, 16, (16, 32, 48, 120), (32, 24, 32)),
    "litepose-m": (448, 16, (24, 48, 72, 120), (64, 40, 32)),
    "litepose-l": (512, 24, (24, 64, 96, 160), (64, 40, 32)),
}


def reference_state_dict_shapes(name: str, joints: int) -> dict[str, tuple[int, ...]]:
    """The official LitePose state_dict keys and shapes, written from litepose.md §4.3."""
    _, c0, widths, deconv = ARCH[name]
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{k}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["first.0.0.weight"] = (32, 3, 3, 3)
    bn("first.0.1", 32)
    shapes["first.1.0.weight"] = (32, 1, 3, 3)
    bn("first.1.1", 32)
    shapes["first.2.weight"] = (c0, 32, 1, 1)
    bn("first.3", c0)
    cin = c0
    for s, (blocks, cout) in enumerate(zip((6, 8, 10, 10), widths)):
        for i in range(blocks):
            bin_ = cin if i == 0 else cout
            hidden = 6 * bin_
            p = f"stage.{s}.{i}"
            shapes[f"{p}.inv.0.weight"] = (hidden, bin_, 1, 1)
            bn(f"{p}.inv.1", hidden)
            shapes[f"{p}.depth_conv.0.weight"] = (hidden, 1, 7, 7)
            bn(f"{p}.depth_conv.1", hidden)
            shapes[f"{p}.point_conv.0.weight"] = (cout, hidden, 1, 1)
            bn(f"{p}.point_conv.1", cout)
        cin = cout
    refined_in = (widths[3], deconv[0], deconv[1])
    raw_in = (widths[2], widths[1], widths[0])
    for i in range(3):
        shapes[f"deconv_refined.{i}.weight"] = (refined_in[i], deconv[i], 4, 4)
        shapes[f"deconv_raw.{i}.weight"] = (raw_in[i], deconv[i], 4, 4)
        bn(f"deconv_bnrelu.{i}.0", deconv[i])
    heads = {
        "final_refined.0": (deconv[1], 2 * joints),
        "final_refined.1": (deconv[2], joints),
        "final_raw.0": (widths[0], 2 * joints),
        "final_raw.1": (c0, joints),
    }
    for p, (c, out) in heads.items():
        shapes[f"{p}.conv.0.weight"] = (c, 1, 5, 5)
        bn(f"{p}.conv.1", c)
        shapes[f"{p}.conv.3.weight"] = (out, c, 1, 1)
    return shapes


def test_registry_lists_the_four_variants():
    names = [spec.name for spec in list_models(family="litepose")]
    assert names == ["litepose-xs", "litepose-s", "litepose-m", "litepose-l"]
    assert get_spec("litepose-l").input_size == (512, 512)
    assert get_spec("litepose-xs").default_dataset == "crowdpose"


@pytest.mark.parametrize(("name", "dataset"), sorted(PARAMS))
def test_exact_parameter_count(name, dataset):
    model = build_model(name, dataset=dataset)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[(name, dataset)]


@pytest.mark.parametrize("name", sorted(ARCH))
def test_state_dict_matches_official_layout(name):
    model = build_model(name, dataset="crowdpose")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = reference_state_dict_shapes(name, 14)
    assert len(got) == 679
    assert got == expected


def test_output_shapes_square_and_rectangular():
    model = build_model("litepose-xs", dataset="coco")
    with torch.no_grad():
        hm_tags, hm = model(torch.randn(2, 3, 256, 384))
    assert hm_tags.shape == (2, 34, 64, 96)
    assert hm.shape == (2, 17, 128, 192)


@pytest.mark.parametrize("name", ["litepose-s", "litepose-l"])
def test_output_shapes_at_paper_size(name):
    model = build_model(name)
    size = get_spec(name).input_size[0]
    with torch.no_grad():
        hm_tags, hm = model(torch.randn(1, 3, size, size))
    assert hm_tags.shape == (1, 28, size // 4, size // 4)
    assert hm.shape == (1, 14, size // 2, size // 2)


def test_input_size_error_names_nearest_valid_sizes():
    model = build_model("litepose-xs")
    with pytest.raises(EdgeposeError, match=r"multiples of 16.*264x256.*256 or 272"):
        model(torch.randn(1, 3, 264, 256))


def test_unknown_model_and_dataset_are_clear_errors():
    with pytest.raises(EdgeposeError, match="did you mean 'litepose-s'"):
        build_model("litepose-ss")
    with pytest.raises(EdgeposeError, match="no 'mpii' head"):
        build_model("litepose-s", dataset="mpii")
