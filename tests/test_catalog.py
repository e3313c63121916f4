"""The released-weights catalog: every entry fits a registered model, and the catalog covers every release."""

from pathlib import PurePosixPath
from urllib.parse import urlparse

import pytest

from edgepose.errors import EdgeposeError
from edgepose.macs import published_sizes
from edgepose.models import check_input_size, get_spec
from edgepose.models.catalog import CATALOG_ENV, load_catalog, parse_catalog

CATALOG = load_catalog()


@pytest.mark.parametrize("entry", CATALOG.entries, ids=lambda e: e.name)
def test_every_entry_fits_a_registered_model(entry):
    spec = get_spec(entry.model)  # raises for an unknown model
    assert entry.dataset in spec.datasets
    check_input_size(spec, *entry.input_size)
    if spec.family in ("litepose", "litehrnet"):  # trained at a size the paper reports
        assert entry.input_size in published_sizes(spec, entry.dataset)
    assert entry.name.startswith(f"{entry.model}-{entry.dataset}")


@pytest.mark.parametrize("entry", CATALOG.entries, ids=lambda e: e.name)
def test_every_entry_says_where_it_comes_from(entry):
    assert entry.urls or entry.gdrive
    assert urlparse(entry.source).scheme == "https"
    assert entry.licence in ("MIT", "Apache-2.0")
    assert entry.metric
    for url in entry.urls:
        assert urlparse(url).scheme == "https"
        assert PurePosixPath(urlparse(url).path).name == entry.file
    if "openmmlab.com" in entry.host:
        # OpenMMLab's file names carry the first 8 hex digits of the sha256: the catalog checks those.
        assert entry.sha256 is not None and len(entry.sha256) == 8
        assert f"-{entry.sha256}_" in entry.file
    else:
        assert entry.gdrive and entry.sha256 is None  # nothing published to check against


def _released(family):
    return {(e.model, e.dataset, e.input_size) for e in CATALOG.entries if get_spec(e.model).family == family}


def test_catalog_covers_every_released_checkpoint():
    # LitePose: 6 of the 8 (dataset, size) pairs were released (no CrowdPose L, no COCO XS).
    assert _released("litepose") == {
        ("litepose-xs", "crowdpose", (256, 256)),
        ("litepose-s", "crowdpose", (448, 448)),
        ("litepose-m", "crowdpose", (448, 448)),
        ("litepose-s", "coco", (448, 448)),
        ("litepose-m", "coco", (448, 448)),
        ("litepose-l", "coco", (512, 512)),
    }
    lite = {
        (f"litehrnet-{d}", ds, size)
        for d in ("18", "30")
        for ds, size in (("coco", (256, 192)), ("coco", (384, 288)), ("mpii", (256, 256)))
    }
    naive = {
        (m, ds, size)
        for m in ("litehrnet-naive-18", "litehrnet-wider-naive-18")
        for ds, size in (("coco", (256, 192)), ("mpii", (256, 256)))
    }
    assert _released("litehrnet") == lite | naive
    # Lite-HRNet 18/30 twice: mmpose's direct URL (the default name) and the paper's own Drive file.
    for model, dataset, (h, w) in lite:
        mmpose = CATALOG.get(f"{model}-{dataset}-{h}x{w}")
        official = CATALOG.get(f"{model}-{dataset}-{h}x{w}-official")
        assert mmpose.urls and "openmmlab.com" in mmpose.host
        assert official.gdrive and not official.urls
    assert {m for m, _, _ in _released("higherhrnet")} == {"higherhrnet-w32", "higherhrnet-w48"}


def test_names_from_the_issue_resolve():
    assert CATALOG.get("litehrnet-18-coco-256x192").file == "litehrnet18_coco_256x192-6bace359_20211230.pth"
    assert CATALOG.get("litepose-s-crowdpose").gdrive == "1kCmjJfrOScaGFDpguEadwxdyJ_ESoR5P"


def test_unknown_name_is_one_line_with_did_you_mean():
    with pytest.raises(EdgeposeError) as err:
        CATALOG.get("litehrnet-18-coco-256x129")
    msg = str(err.value)
    assert "did you mean 'litehrnet-18-coco-256x192'?" in msg and "\n" not in msg


def test_for_model_filters_by_model_and_dataset():
    assert [e.name for e in CATALOG.for_model("litepose-s")] == ["litepose-s-crowdpose", "litepose-s-coco"]
    assert [e.name for e in CATALOG.for_model("litehrnet-30", "mpii")] == [
        "litehrnet-30-mpii-256x256",
        "litehrnet-30-mpii-256x256-official",
    ]
    assert CATALOG.for_model("higherhrnet-w16") == []


GOOD = """
[[weights]]
name = "x"
model = "litepose-xs"
dataset = "crowdpose"
input_size = [256, 256]
file = "x.pth"
urls = ["http://127.0.0.1:1/x.pth"]
sha256 = "ABCDEF01"
metric = "m"
source = "https://example.org"
licence = "MIT"
"""


def test_a_catalog_of_ones_own_through_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "mirror.toml"
    path.write_text(GOOD)
    monkeypatch.setenv(CATALOG_ENV, str(path))
    catalog = load_catalog()
    assert catalog.names() == ["x"]
    assert catalog.get("x").sha256 == "abcdef01"  # checksums compare in lowercase


@pytest.mark.parametrize(
    "edit, message",
    [
        (('licence = "MIT"\n', ""), "missing licence"),
        (('metric = "m"\n', 'metric = "m"\nmirror = "y"\n'), "unknown field(s) mirror"),
        (('sha256 = "ABCDEF01"', 'sha256 = "xyz"'), "sha256 must be 8-64 hex digits"),
        (('file = "x.pth"', 'file = "../x.pth"'), "bad file name '../x.pth'"),
        (("input_size = [256, 256]", "input_size = [256]"), "input_size must be [H, W]"),
        (('urls = ["http://127.0.0.1:1/x.pth"]', 'urls = ["file:///etc/passwd"]'), "not an http(s) URL"),
        (('urls = ["http://127.0.0.1:1/x.pth"]\n', ""), "needs urls or a gdrive id"),
        (("[[weights]]", "[[weights"), "not valid TOML"),
    ],
)
def test_bad_catalog_entries_are_one_line_errors(edit, message):
    with pytest.raises(EdgeposeError) as err:
        parse_catalog(GOOD.replace(*edit), "mine.toml")
    assert message in str(err.value) and str(err.value).startswith("mine.toml")


def test_duplicate_names_are_refused():
    with pytest.raises(EdgeposeError, match="two weights entries have the name 'x'"):
        parse_catalog(GOOD + GOOD.replace('file = "x.pth"', 'file = "y.pth"'), "mine.toml")
