"""Atomic writes: a failure never leaves a half-written file or folder behind."""

import pytest

from edgepose.atomic import staged_dir, write_bytes, write_text


def test_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_staged_dir_publishes_on_success_and_replaces_old(tmp_path):
    final = tmp_path / "artifact"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with staged_dir(final) as stage:
        (stage / "model.onnx").write_bytes(b"new")
        assert not (final / "model.onnx").exists()  # nothing visible before success
    assert sorted(p.name for p in final.iterdir()) == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def test_staged_dir_failure_leaves_nothing(tmp_path):
    final = tmp_path / "artifact"
    with pytest.raises(RuntimeError):
        with staged_dir(final) as stage:
            (stage / "model.onnx").write_bytes(b"half")
            raise RuntimeError("parity check failed")
    assert list(tmp_path.iterdir()) == []


def test_staged_dir_failure_keeps_previous_artifact(tmp_path):
    final = tmp_path / "artifact"
    final.mkdir()
    (final / "model.onnx").write_bytes(b"good")
    with pytest.raises(RuntimeError):
        with staged_dir(final) as stage:
            (stage / "model.onnx").write_bytes(b"bad")
            raise RuntimeError("boom")
    assert (final / "model.onnx").read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]
