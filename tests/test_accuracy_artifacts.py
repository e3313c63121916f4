"""Agreement and COCO evaluation on real exports (edgepose agree / eval, the export's parity block).

Random weights find nobody at the decoder's default threshold, so the bottom-up model here gets weights
the test makes (LitePose-XS with its prediction convs scaled up: real peaks above 0.1 and spread-out
tags), saved as a checkpoint so that every path through ``--weights FILE`` is used. The top-down model
(Lite-HRNet-18) peaks with random weights, so it keeps the exporter's seeded random weights, which the
reference rebuilds from the manifest. Every test first checks that the reference really finds people.
"""

import contextlib
import io
import json

import cv2
import pytest
import torch

from edgepose.accuracy.agreement import Protocol, measure
from edgepose.accuracy.ap import pose_annotation
from edgepose.accuracy.images import bundled_photos, image_paths, read_images
from edgepose.cli import main
from edgepose.device.manifest import load_manifest
from edgepose.device.pipeline import PosePipeline
from edgepose.device.skeletons import get_skeleton
from edgepose.export.pipeline import export_model
from edgepose.models import build_model
from edgepose.torch_runtime import TorchRuntime

pytestmark = pytest.mark.slow
BOTTOM_UP = ("litepose-xs", "crowdpose", (128, 128))
TOP_DOWN = ("litehrnet-18", "coco", (128, 96))
COCO_PEOPLE = 20  # COCO's AP looks at 20 people per image: the set and the decoder keep to that


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("accuracy")


@pytest.fixture(scope="module")
def photos(root):
    """The bundled photos as PNG files (lossless: the pixels the tests compute with are the file's)."""
    folder = root / "photos"
    folder.mkdir()
    for name, frame in bundled_photos():
        cv2.imwrite(str(folder / f"{name}.png"), frame)
    return folder


@pytest.fixture(scope="module")
def weights(root):
    """A LitePose-XS checkpoint with peaked heatmaps and spread-out tags (see the module docstring)."""
    name, dataset, _ = BOTTOM_UP
    torch.manual_seed(0)
    state = build_model(name, dataset=dataset).state_dict()
    joints = len(get_skeleton(dataset)["joints"])
    for key, value in state.items():
        if key.endswith("conv.3.weight"):  # the prediction convs
            value.mul_(8.0)
            if value.shape[0] == 2 * joints:
                value[joints:] *= 100.0
    path = root / "litepose-xs-peaked.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def bottom_up(root, weights):
    name, dataset, size = BOTTOM_UP
    return export_model(name, "onnx", dataset=dataset, input_size=size, weights=weights, out=root / "xs-onnx")


@pytest.fixture(scope="module")
def bottom_up_int8(root, weights, photos):
    pytest.importorskip("ai_edge_litert", reason="the TFLite int8 export needs the 'tflite' extra")
    name, dataset, size = BOTTOM_UP
    return export_model(
        name, "rpi4", dataset=dataset, input_size=size, weights=weights, precision="int8", calib=photos,
        out=root / "xs-int8",
    )  # fmt: skip


@pytest.fixture(scope="module")
def top_down(root):
    name, dataset, size = TOP_DOWN
    return export_model(name, "onnx", dataset=dataset, input_size=size, out=root / "lh18-onnx")


def agree(folder, *args, capsys=None):
    """`edgepose agree` through the CLI; (exit code, parsed --json result or None, stdout, stderr)."""
    out = folder.parent / f"{folder.name}-agree.json"
    out.unlink(missing_ok=True)
    code = main(["agree", str(folder), "--threads", "1", "--json", str(out), *args])
    captured = capsys.readouterr() if capsys is not None else None
    result = json.loads(out.read_text()) if out.exists() else None
    return code, result, captured


# ---- edgepose agree -------------------------------------------------------------------------------


def test_agree_bottom_up_fp32_onnx_finds_the_same_people(bottom_up, weights, capsys):
    code, result, captured = agree(bottom_up, "--weights", str(weights), capsys=capsys)
    assert code == 0
    overall = result["overall"]
    assert overall["images"] == 4 and overall["people"] >= 10  # the reference really has people
    assert overall["ap"] >= 0.99 and overall["found"] >= 0.99
    assert [r["image"] for r in result["per_image"]] == ["astronaut", "camera", "chelsea", "coffee"]
    assert (
        result["weights"].startswith("litepose-xs-peaked.pth") and result["protocol"]["det_threshold"] == 0.1
    )
    assert result["protocol"]["peaks_per_joint"] is None  # real weights: the crowd grouping's own cap
    assert "all (4 images)" in captured.out and "CrowdPose's sigmas" in captured.out


def test_agree_needs_the_very_weights_the_manifest_names(bottom_up, root, capsys):
    code, _, captured = agree(bottom_up, capsys=capsys)
    assert code == 2 and "pass them with --weights" in captured.err and "Traceback" not in captured.err
    other = root / "other.pth"
    torch.manual_seed(1)
    torch.save(build_model(BOTTOM_UP[0], dataset=BOTTOM_UP[1]).state_dict(), other)
    code, _, captured = agree(bottom_up, "--weights", str(other), capsys=capsys)
    assert code == 2 and "sha256 differs" in captured.err


def test_agree_int8_is_lower_and_reported(bottom_up, bottom_up_int8, weights, capsys):
    code, result, captured = agree(bottom_up_int8, "--weights", str(weights), capsys=capsys)
    assert code == 0 and result["precision"] == "int8" and result["runtime"].startswith("tflite")
    _, fp32, _ = agree(bottom_up, "--weights", str(weights), capsys=capsys)
    assert result["overall"]["people"] == fp32["overall"]["people"] >= 10  # the same reference
    assert 0.0 <= result["overall"]["ap"] < fp32["overall"]["ap"]
    print(f"agreement AP: int8 TFLite {result['overall']['ap']:.3f}, fp32 ONNX {fp32['overall']['ap']:.3f}")


def test_agree_refuses_boxes_for_a_bottom_up_model(bottom_up, weights, root, capsys):
    boxes = root / "boxes.json"
    boxes.write_text("[[0, 0, 50, 50]]")
    code, _, captured = agree(bottom_up, "--weights", str(weights), "--boxes", str(boxes), capsys=capsys)
    assert code == 2 and "--boxes is for top-down models" in captured.err


def test_agree_top_down_on_the_whole_image_and_on_given_boxes(top_down, root, capsys):
    code, whole, _ = agree(top_down, capsys=capsys)  # random weights, rebuilt from the manifest's seed
    assert code == 0 and whole["weights"] == "random (seed 0)"
    assert [r["people"] for r in whole["per_image"]] == [1, 1, 1, 1]  # one person per whole-image box
    assert whole["overall"]["ap"] >= 0.99 and whole["protocol"]["boxes"] == "the whole image"
    boxes = root / "td-boxes.json"
    boxes.write_text(json.dumps({"frames": {"astronaut": [[150, 20, 350, 500], [0, 0, 200, 250, 0.8]],
                                            "camera": [[180, 40, 420, 480]]}}))  # fmt: skip
    code, given, _ = agree(top_down, "--boxes", str(boxes), capsys=capsys)
    assert code == 0 and given["protocol"]["boxes"] == "the boxes file given"
    assert [r["people"] for r in given["per_image"]] == [2, 1, 0, 0]  # images without boxes: nobody
    assert given["overall"]["people"] == 3 and given["overall"]["ap"] >= 0.99
    assert given["per_image"][2]["ap"] is None  # nobody to find: undefined, not 0 or 1


def test_agree_skips_an_unreadable_image(top_down, photos, root, capsys):
    folder = root / "mixed"
    folder.mkdir()
    for name in ("astronaut.png", "coffee.png"):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    code, result, captured = agree(top_down, "--images", str(folder), capsys=capsys)
    assert code == 0 and "warning: skipping" in captured.err and "broken.jpg" in captured.err
    assert [r["image"] for r in result["per_image"]] == ["astronaut.png", "coffee.png"]
    assert result["photos"].endswith("(3 files)")


def test_random_bottom_up_weights_are_compared_at_a_zero_threshold(root, photos):
    name, dataset, size = BOTTOM_UP
    folder = export_model(name, "onnx", dataset=dataset, input_size=size, out=root / "xs-random")
    frames = list(read_images(image_paths(photos)))
    result = measure(folder, frames, photos_label="photos", threads=1)
    assert result["protocol"]["det_threshold"] == 0.0 and result["weights"] == "random (seed 0)"
    # At threshold 0 every local maximum is a peak: the random protocol keeps the 30 strongest per joint.
    assert result["protocol"]["peaks_per_joint"] == 30
    assert PosePipeline(str(folder), peaks_per_joint=7).decoder.max_people == 7  # it reaches the decoder
    assert result["overall"]["people"] >= 10 and result["overall"]["ap"] >= 0.99
    assert any("random weights" in n for n in result["notes"])
    strict = measure(folder, frames, photos_label="photos", threads=1, protocol=Protocol(det_threshold=0.1))
    assert strict["overall"]["people"] == 0 and strict["overall"]["ap"] is None  # why the default is 0
    assert any("finds nobody" in n for n in strict["notes"])


def test_every_export_carries_its_agreement_in_the_parity_block(bottom_up, bottom_up_int8, top_down):
    fp32 = load_manifest(str(bottom_up))["parity"]["agreement"]
    assert fp32["people"] >= 5 and fp32["ap"] >= 0.99 and fp32["images"] == 1
    assert fp32["photos"].startswith("astronaut") and fp32["runtime"].startswith("onnxruntime")
    int8 = load_manifest(str(bottom_up_int8))["parity"]["agreement"]
    assert int8["people"] == fp32["people"] and int8["ap"] < 1.0 and int8["runtime"].startswith("tflite")
    td = load_manifest(str(top_down))["parity"]["agreement"]
    assert td["people"] == 1 and td["ap"] >= 0.99 and td["weights"] == "random (seed 0)"


# ---- edgepose eval on a COCO-format set made from the reference's poses --------------------------


def _reference_set(folder, weights, photos, path, boxes=None):
    """A COCO keypoint file whose people are the PyTorch reference's poses on the photos (crowdIndex too).

    ``boxes`` (top-down): per image name, the boxes the reference ran on; they become the people's boxes,
    so that evaluating on ground-truth boxes crops exactly what the reference saw.
    """
    manifest = load_manifest(str(folder))
    runtime = TorchRuntime(manifest, weights=weights, threads=1)
    reference = PosePipeline(str(folder), runtime=runtime, manifest=manifest, max_people=COCO_PEOPLE)
    images, annotations = [], []
    for image_id, (name, frame) in enumerate(read_images(image_paths(photos)), start=1):
        images.append({"id": image_id, "file_name": name, "width": frame.shape[1], "height": frame.shape[0],
                       "crowdIndex": [0.05, 0.5, 0.9, 0.3][image_id - 1]})  # fmt: skip
        given = boxes.get(name, []) if boxes is not None else None
        for person in reference(frame, given)["people"]:
            ann = pose_annotation(person["keypoints"])
            if person["box"] is not None:
                x1, y1, x2, y2 = person["box"]
                ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            ann.update(id=len(annotations) + 1, image_id=image_id, category_id=1)
            annotations.append(ann)
    joints = get_skeleton(manifest["model"]["dataset"])["joints"]
    categories = [{"id": 1, "name": "person", "keypoints": joints}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return len(annotations)


@pytest.fixture(scope="module")
def bottom_up_set(bottom_up, weights, photos, root):
    path = root / "xs-reference.json"
    people = _reference_set(bottom_up, weights, photos, path)
    assert people >= 20  # the reference really has people
    return path


def evaluate(target, coco, photos, *args, capsys):
    out, results = coco.parent / "eval.json", coco.parent / "results.json"
    code = main(["eval", str(target), "--coco", str(coco), "--images", str(photos), "--threads", "1",
                 "--max-people", str(COCO_PEOPLE), "--json", str(out), "--results", str(results), *args])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    return json.loads(out.read_text()), json.loads(results.read_text()), printed


def pycocotools_ap(coco, results, sigmas):
    """AP of the results file scored by pycocotools directly (the reference implementation)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco))
        evaluator = COCOeval(gt, gt.loadRes(results), "keypoints")
        evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_eval_the_reference_against_itself_is_one(bottom_up_set, weights, photos, capsys):
    pytest.importorskip("pycocotools")
    name, dataset, (h, w) = BOTTOM_UP
    record, _, printed = evaluate(name, bottom_up_set, photos, "--weights", str(weights), "--dataset", dataset,
                                  "--input", f"{h}x{w}", capsys=capsys)  # fmt: skip
    assert record["metrics"]["AP"] == 1.0 and record["metrics"]["AR"] == 1.0
    assert record["images"] == {"evaluated": 4, "skipped": 0, "folder": str(photos)}
    protocol = record["protocol"]
    assert protocol["input_size"] == [h, w] and protocol["flip"] is False and protocol["det_threshold"] == 0.1
    assert protocol["sigmas"] == "CrowdPose's sigmas" and protocol["evaluator"].startswith("pycocotools")
    assert set(record["crowd_index"]) == {"easy", "medium", "hard"}
    assert record["crowd_index"]["hard"] == {"images": 1, "AP": 1.0}
    assert "1.000" in printed and "crowd index" in printed


def test_eval_fp32_and_int8_artifacts_and_pycocotools_agree(bottom_up, bottom_up_int8, bottom_up_set, photos,
                                                            weights, capsys):  # fmt: skip
    pytest.importorskip("pycocotools")
    from edgepose.accuracy.oks import SIGMAS

    fp32, _, _ = evaluate(bottom_up, bottom_up_set, photos, capsys=capsys)
    assert fp32["metrics"]["AP"] >= 0.99
    int8, results, printed = evaluate(bottom_up_int8, bottom_up_set, photos, capsys=capsys)
    ap = int8["metrics"]["AP"]
    assert 0.0 <= ap < fp32["metrics"]["AP"]
    stats = pycocotools_ap(bottom_up_set, results, SIGMAS["crowdpose"])  # the same JSON, scored directly
    assert ap == stats[0] and int8["metrics"]["AP50"] == stats[1] and int8["metrics"]["AR"] == stats[5]
    assert f"{ap:.3f}" in printed
    # Agreement on the same photos (reference poses as ground truth) is the same AP, computed by edgepose.
    frames = list(read_images(image_paths(photos)))
    agreement = measure(bottom_up_int8, frames, photos_label="photos", weights=weights, threads=1,
                        protocol=Protocol(max_people=COCO_PEOPLE))  # fmt: skip
    assert agreement["overall"]["ap"] == pytest.approx(ap, abs=5e-5)  # the record keeps 4 decimals
    print(f"eval AP on the reference set: fp32 ONNX {fp32['metrics']['AP']:.3f}, int8 TFLite {ap:.3f}")


def test_eval_top_down_on_ground_truth_boxes_and_on_detections(top_down, photos, root, capsys):
    pytest.importorskip("pycocotools")
    boxes = {"astronaut.png": [[150, 20, 350, 500, 1.0]], "camera.png": [[180, 40, 420, 480, 1.0]],
             "chelsea.png": [[0, 0, 300, 300, 1.0], [100, 50, 450, 300, 1.0]]}  # fmt: skip
    coco = root / "lh18-reference.json"
    assert _reference_set(top_down, None, photos, coco, boxes) == 4
    gt_boxes, _, _ = evaluate(top_down, coco, photos, capsys=capsys)
    assert gt_boxes["metrics"]["AP"] == 1.0 and gt_boxes["protocol"]["boxes"] == "ground truth"
    assert gt_boxes["protocol"]["sigmas"] == "COCO's sigmas"
    ids = {name: i for i, name in enumerate(sorted(boxes) + ["coffee.png"], start=1)}
    detections = [{"image_id": ids[name], "category_id": 1, "score": s,
                   "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                  for name, bs in boxes.items() for b, s in zip(bs, (0.9, 0.6))]  # fmt: skip
    detections.append({"image_id": ids["coffee.png"], "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.2})
    dets = root / "detections.json"
    dets.write_text(json.dumps(detections))
    found, _, _ = evaluate(top_down, coco, photos, "--detections", str(dets), "--box-threshold", "0.3",
                           capsys=capsys)  # fmt: skip
    assert found["metrics"]["AP"] == 1.0 and found["people"] == 4  # the low-scoring box was dropped
    assert found["protocol"]["boxes"] == "detections file" and found["protocol"]["box_threshold"] == 0.3
    kept, _, _ = evaluate(top_down, coco, photos, "--detections", str(dets), capsys=capsys)
    assert kept["people"] == 5 and kept["metrics"]["AP"] == 1.0  # ranked below every true person: no cost
    detections[-1]["score"] = 100.0  # the same invented person, now ranked first
    dets.write_text(json.dumps(detections))
    ranked_first, _, _ = evaluate(top_down, coco, photos, "--detections", str(dets), capsys=capsys)
    assert ranked_first["people"] == 5 and ranked_first["metrics"]["AP"] < 1.0
    assert ranked_first["metrics"]["AR"] == 1.0  # every true person is still found


def test_eval_errors_are_one_line(top_down, photos, root, capsys):
    pytest.importorskip("pycocotools")
    bad = root / "bad.json"
    bad.write_text('{"images": []}')
    cases = [
        (["eval", str(top_down), "--coco", str(bad), "--images", str(photos)], "not a COCO keypoint file"),
        (["eval", str(top_down), "--coco", str(root / "none.json"), "--images", str(photos)], "not found"),
        (["eval", "litepose-xs", "--coco", str(bad), "--images", str(photos), "--backend", "onnxruntime"],
         "--backend is for an artifact folder"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    crowd = root / "crowd.json"  # 14-joint annotations for a 17-joint model
    crowd.write_text(json.dumps({"images": [{"id": 1, "file_name": "astronaut.png"}], "categories": [{"id": 1}],
                                 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9],
                                                  "keypoints": [0] * 42}]}))  # fmt: skip
    assert main(["eval", str(top_down), "--coco", str(crowd), "--images", str(photos)]) == 2
    assert "has 14 joints, the model has 17" in capsys.readouterr().err


# ---- edgepose bench --agree -----------------------------------------------------------------------


def test_bench_agree_puts_the_agreement_in_every_record(root, capsys):
    from edgepose.bench.records import read_records

    out = root / "bench.jsonl"
    argv = ["bench", "--device", "host", "--models", "litepose-xs", "--input", "64x64", "--runs", "3",
            "--warmup", "1", "--no-pipeline", "--out", str(out), "--cache", str(root / "bench"), "--agree"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    (record,) = read_records([out])
    agreement = record["agreement"]
    assert agreement["people"] >= 10 and agreement["ap"] >= 0.99 and agreement["images"] == 4
    assert agreement["weights"] == "random (seed 0)" and agreement["det_threshold"] == 0.0
    assert "agree AP" in printed.splitlines()[0] and f"{agreement['ap']:.3f}" in printed
