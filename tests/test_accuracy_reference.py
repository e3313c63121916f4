"""The reference of agreement and of `eval MODEL`: the PyTorch model rebuilt from what a manifest records.

Seeded random weights (the exporter's seed), a released checkpoint by its catalog name (from the cache,
no network: a Drive entry whose file is put where edgepose looks for it), or a checkpoint file; and
always NCHW in and out, whatever the artifact's layout.
"""

import sys

import numpy as np
import pytest
import torch

from edgepose.accuracy.reference import model_manifest
from edgepose.errors import EdgeposeError
from edgepose.hub import weights_dir
from edgepose.models import build_model
from edgepose.models.catalog import CATALOG_ENV
from edgepose.torch_runtime import TorchRuntime

SIZE = (64, 64)
X = np.random.RandomState(0).rand(1, 3, *SIZE).astype(np.float32)


def _outputs(model):
    with torch.no_grad():
        out = model(torch.from_numpy(X))
    return [t.numpy() for t in (out if isinstance(out, tuple | list) else (out,))]


def _same(runtime, model):
    got = runtime.run(X)
    for name, want in zip(runtime.names, _outputs(model)):
        np.testing.assert_array_equal(got[name], want)


def test_random_weights_are_the_exporters_seeded_ones():
    from edgepose.export.pipeline import RANDOM_SEED

    manifest, path = model_manifest("litepose-xs", input_size=SIZE)
    assert path is None and manifest["model"]["weights"]["kind"] == "random"
    torch.manual_seed(123)  # the global generator must not matter
    runtime = TorchRuntime(manifest)
    torch.manual_seed(RANDOM_SEED)
    _same(runtime, build_model("litepose-xs"))
    assert "random weights (seed 0)" in runtime.path
    with pytest.raises(EdgeposeError, match="seeded random weights: leave --weights out"):
        TorchRuntime(manifest, weights="any.pth")


def test_a_checkpoint_file_and_a_catalog_name(tmp_path, monkeypatch):
    torch.manual_seed(5)
    source = build_model("litepose-xs")
    file = tmp_path / "mine.pth"
    torch.save(source.state_dict(), file)
    manifest, path = model_manifest("litepose-xs", file, input_size=SIZE)
    assert manifest["model"]["weights"]["kind"] == "file" and path == file.resolve()
    with pytest.raises(EdgeposeError, match="pass them with --weights"):
        TorchRuntime(manifest)
    _same(TorchRuntime(manifest, weights=file), source)

    # A released name: a Drive entry without gdown takes the file put at the cached path.
    home = tmp_path / "home"
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        '[[weights]]\nname = "xs-test"\nmodel = "litepose-xs"\ndataset = "crowdpose"\ninput_size = [64, 64]\n'
        'file = "xs-test.pth"\nmetric = "test"\nsource = "https://example.org"\nlicence = "MIT"\ngdrive = "ID"\n'
    )
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    monkeypatch.setenv("EDGEPOSE_HOME", str(home))
    monkeypatch.setitem(sys.modules, "gdown", None)
    weights_dir(home).mkdir(parents=True)
    (weights_dir(home) / "xs-test.pth").write_bytes(file.read_bytes())
    manifest, _ = model_manifest("litepose-xs", "xs-test")
    recorded = manifest["model"]["weights"]
    assert (
        recorded["kind"] == "catalog"
        and recorded["name"] == "xs-test"
        and manifest["input"]["shape"][2:] == [64, 64]
    )
    _same(TorchRuntime(manifest), source)  # found by name, no --weights


def test_nchw_whatever_the_artifacts_layout():
    manifest, _ = model_manifest("litepose-xs", input_size=SIZE)
    nhwc = {
        **manifest,
        "input": {**manifest["input"], "layout": "NHWC", "shape": [1, *SIZE, 3]},
        "outputs": [{**o, "layout": "NHWC"} for o in manifest["outputs"]],
    }
    a, b = TorchRuntime(manifest).run(X), TorchRuntime(nhwc).run(X)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert a[name].shape[1] in (14, 28)  # channels first
