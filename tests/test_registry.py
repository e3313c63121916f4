"""Registry: size parsing, input-size validation messages, and the one way families register."""

import pytest
from torch import nn

from edgepose.errors import EdgeposeError
from edgepose.models import (
    Family,
    OutputSpec,
    Variant,
    build_model,
    check_input_size,
    get_spec,
    list_models,
    parse_size,
    register_family,
    registry,
)


@pytest.mark.parametrize(
    ("text", "size"), [("448", (448, 448)), ("256x192", (256, 192)), ("384×288", (384, 288))]
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "256x", "0x10", "1x2x3", "-32"])
def test_parse_size_rejects_garbage(text):
    with pytest.raises(EdgeposeError, match="bad input size"):
        parse_size(text)


def test_check_input_size_names_both_bad_axes():
    spec = get_spec("litepose-s")
    check_input_size(spec, 448, 320)
    with pytest.raises(EdgeposeError) as err:
        check_input_size(spec, 450, 8)
    msg = str(err.value)
    assert "height 450 (nearest valid: 448 or 464)" in msg
    assert "width 8 (nearest valid: 16)" in msg


# --- families register one way -----------------------------------------------------------------------

# One cheap variant of every family: the head size is checked before anything is built.
ONE_PER_FAMILY = ("litepose-xs", "litehrnet-18", "higherhrnet-w16", "efficienthrnet-h4")


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "5"])
def test_num_joints_validated_the_same_way_for_every_family(name, bad):
    with pytest.raises(EdgeposeError) as err:
        build_model(name, num_joints=bad)
    message = str(err.value)
    assert message == f"{name}: num_joints must be a positive integer, got {bad!r}"
    assert "\n" not in message


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_bad_dataset_and_unknown_option_are_one_line_errors(name):
    with pytest.raises(EdgeposeError, match=f"{name} has no 'nosuch' head; choose one of: "):
        build_model(name, dataset="nosuch")
    with pytest.raises(EdgeposeError, match=rf"bad option for {name}: .*unexpected keyword argument 'width'"):
        build_model(name, width=3)


def test_register_family_makes_specs_and_named_builders(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave the real one untouched
    family = Family(
        name="toy",
        kind="bottom-up",
        paper="Toy (2024)",
        datasets=("coco", "crowdpose"),
        size_multiple=8,
        outputs=(OutputSpec(name="heatmaps", role="heatmaps", stride=2, channels_per_joint=1),),
        mac_convention="ptflops-0.6",
    )
    built = []

    def build(spec, config, num_joints):
        built.append((spec.name, config, num_joints))
        return nn.Conv2d(3, num_joints * config, 1)

    specs = register_family(
        family,
        {
            "toy-a": Variant((64, 48), "Toy A", 1, ((128, 96),)),
            "toy-b": Variant((32, 32), "Toy B", 2),
        },
        build,
    )
    assert list(specs) == ["toy-a", "toy-b"] and get_spec("toy-b") is specs["toy-b"]
    a = specs["toy-a"]
    assert (a.family, a.kind, a.paper, a.datasets, a.size_multiple, a.mac_convention) == (
        "toy",
        "bottom-up",
        "Toy (2024)",
        ("coco", "crowdpose"),
        8,
        "ptflops-0.6",
    )
    assert (a.input_size, a.extra_sizes, a.description, a.outputs) == (
        (64, 48),
        ((128, 96),),
        "Toy A",
        family.outputs,
    )
    model = build_model("toy-b")  # default dataset coco: 17 joints
    assert (model.spec, model.dataset, model.out_channels, model.training) == (
        specs["toy-b"],
        "coco",
        34,
        False,
    )
    model = build_model("toy-a", dataset="crowdpose", num_joints=3)
    assert (model.dataset, model.out_channels) == ("crowdpose", 3)
    assert built == [("toy-b", 2, 17), ("toy-a", 1, 3)]
    builder = registry._REGISTRY["toy-a"][1]
    assert builder.__name__ == "toy_a" and builder().spec is a  # a named builder is complete on its own
    with pytest.raises(ValueError, match="registered twice"):
        register_family(family, {"toy-a": Variant((8, 8), "again")}, build)


# Every family module, and the family it registers (a family may span modules: Lite-HRNet pose + segmentation).
FAMILY_OF_MODULE = {
    "edgepose.models.litepose": "litepose",
    "edgepose.models.litehrnet": "litehrnet",
    "edgepose.models.litehrnet_seg": "litehrnet",
    "edgepose.models.higherhrnet": "higherhrnet",
    "edgepose.models.efficienthrnet": "efficienthrnet",
}


def test_family_module_list_is_complete():
    from edgepose.models.families import FAMILY_MODULES

    assert set(FAMILY_MODULES) == set(FAMILY_OF_MODULE)
    assert {s.family for s in list_models()} == set(FAMILY_OF_MODULE.values())


@pytest.mark.parametrize("module", sorted(FAMILY_OF_MODULE))
def test_families_share_blocks_through_neutral_modules(module):
    """A family module imports no other family's module (shared blocks live in neutral ones)."""
    import ast
    import importlib
    from pathlib import Path

    source = Path(importlib.import_module(module).__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    others = {m for m, family in FAMILY_OF_MODULE.items() if family != FAMILY_OF_MODULE[module]}
    assert not imported & others
    assert "register_family(" in source and "register_model" not in source
