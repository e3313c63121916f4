"""The segmentation decoder and pipeline on synthetic logits: exact labels, class shares, palette, overlay, flip."""

import json

import cv2
import numpy as np
import pytest

from edgepose.device.decode_segmentation import SegmentationDecoder, decode_size, logits_matrix
from edgepose.device.draw import draw_class_legend
from edgepose.device.errors import EdgeposeError
from edgepose.device.pipeline import SegmentationPipeline, open_pipeline, pipeline_class
from edgepose.device.preprocess import letterbox_matrix
from edgepose.device.runtime.base import Runtime
from edgepose.device.segmentation_classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE_RGB

CLASSES, PALETTE = CITYSCAPES_CLASSES, CITYSCAPES_PALETTE_RGB


def one_hot(label_map, classes=19, peak=10.0):
    """(h, w) class ids -> (C, h, w) logits whose argmax is that map (the winner leads by ``peak``)."""
    logits = np.zeros((classes,) + label_map.shape, np.float32)
    for c in range(classes):
        logits[c][label_map == c] = peak
    return logits


def test_labels_shares_and_palette_are_exact_on_a_synthetic_map():
    # Stride 1 and a frame the size of the input: the decoder must return the map itself.
    truth = np.zeros((40, 80), np.uint8)
    truth[:, 40:] = 13  # car: half the frame
    truth[:20, :20] = 10  # sky: 400 of 3200 pixels = 1/8
    truth[30:, 70:] = 18  # bicycle: 100 pixels = 1/32
    decoder = SegmentationDecoder(CLASSES, PALETTE, stride=1)
    identity = letterbox_matrix((40, 80), (40, 80))
    labels = decoder(one_hot(truth), identity, (40, 80))
    assert labels.dtype == np.uint8 and labels.shape == (40, 80)
    np.testing.assert_array_equal(labels, truth)
    shares = decoder.shares(labels)
    expected = np.zeros(19)
    expected[[0, 10, 13, 18]] = [0.5 - 1 / 8, 1 / 8, 0.5 - 1 / 32, 1 / 32]
    np.testing.assert_allclose(shares, expected, atol=0)
    # The JSON field: classes present only, largest first, by name.
    named = decoder.named_shares(shares)
    assert list(named) == ["car", "road", "sky", "bicycle"]
    assert named == {"road": 0.375, "car": 0.46875, "sky": 0.125, "bicycle": 0.03125}
    json.dumps(named)
    # Colours: the Cityscapes palette, turned BGR for OpenCV.
    colors = decoder.colorize(labels)
    assert tuple(colors[0, 0]) == (180, 130, 70)  # sky, RGB (70, 130, 180)
    assert tuple(colors[0, 79]) == (142, 0, 0)  # car, RGB (0, 0, 142)
    assert tuple(colors[39, 79]) == (32, 11, 119)  # bicycle, RGB (119, 11, 32)
    assert tuple(colors[39, 0]) == (128, 64, 128)  # road
    # Overlay: alpha 1 is the colour map, alpha 0 the frame, 0.5 the mean.
    frame = np.full((40, 80, 3), 200, np.uint8)
    np.testing.assert_array_equal(decoder.overlay(frame.copy(), labels, 1.0), colors)
    np.testing.assert_array_equal(decoder.overlay(frame.copy(), labels, 0.0), frame)
    half = decoder.overlay(frame.copy(), labels, 0.5).astype(int)
    assert np.abs(half - (frame.astype(int) + colors) / 2).max() <= 1


def test_stride_and_letterbox_are_undone():
    # A 120x160 frame, left half class 2 (building) and right half class 8 (vegetation), seen letterboxed
    # in a 64x128 input (bars left and right) by a stride-4 network: the logits grid is 16x32.
    frame_hw, input_hw, stride = (120, 160), (64, 128), 4
    matrix = letterbox_matrix(frame_hw, input_hw)
    grid = logits_matrix(matrix, stride)
    # The logits grid cell that frame pixel (x, y) falls in, by the same geometry as the decoder.
    v, u = np.mgrid[0:16, 0:32].astype(np.float64)
    x_in, y_in = u * stride + (stride - 1) / 2, v * stride + (stride - 1) / 2
    inverse = cv2.invertAffineTransform(matrix)
    x_frame = inverse[0, 0] * x_in + inverse[0, 2]
    truth_grid = np.where(x_frame < 80, 2, 8).astype(np.uint8)
    decoder = SegmentationDecoder(CLASSES, PALETTE, stride)
    labels = decoder(one_hot(truth_grid), matrix, frame_hw)
    assert labels.shape == frame_hw
    # Away from the boundary (bilinear blending spreads over one grid cell = 4 frame pixels), exact.
    cols = np.arange(160)
    assert (labels[:, cols < 74] == 2).all() and (labels[:, cols > 86] == 8).all()
    assert decoder.shares(labels)[[2, 8]].sum() == 1.0
    assert abs(decoder.shares(labels)[2] - 0.5) < 0.05
    # The matrix maps each grid cell's input-pixel centre onto the cell itself.
    centre = np.array([x_in[0, 5], y_in[0, 5], 1.0])
    frame_pt = inverse.dot(centre)
    assert np.allclose(grid.dot([frame_pt[0], frame_pt[1], 1.0]), [5.0, 0.0])


def test_a_frame_larger_than_the_input_is_decoded_at_the_input_scale():
    frame_hw, input_hw = (1024, 2048), (256, 512)  # a Cityscapes frame into a quarter-size input
    matrix = letterbox_matrix(frame_hw, input_hw)
    assert decode_size(matrix, frame_hw) == (256, 512)
    assert decode_size(letterbox_matrix((120, 160), input_hw), (120, 160)) == (120, 160)
    truth_grid = np.zeros((64, 128), np.uint8)
    truth_grid[:, 64:] = 13
    truth_grid[:32, :32] = 10
    labels = SegmentationDecoder(CLASSES, PALETTE, 4)(one_hot(truth_grid), matrix, frame_hw)
    assert labels.shape == frame_hw
    # Quadrants of the frame: exact away from the edges of the regions (one grid cell = 16 frame pixels).
    assert (labels[:, :1000] != 13).all() and (labels[:, 1048:] == 13).all()
    assert (labels[:480, :480] == 10).all() and (labels[560:, :1000] == 0).all()


def test_bad_label_sets_are_clear_errors():
    with pytest.raises(EdgeposeError, match="class names"):
        SegmentationDecoder([], [], 4)
    with pytest.raises(EdgeposeError, match="2 colours for 3 classes"):
        SegmentationDecoder(["a", "b", "c"], [(0, 0, 0), (1, 1, 1)], 4)
    decoder = SegmentationDecoder(CLASSES, PALETTE, 4)
    with pytest.raises(EdgeposeError, match="gives 5 class logits, the manifest names 19"):
        decoder(np.zeros((5, 4, 4), np.float32), np.eye(2, 3), (16, 16))


class _PoolRuntime(Runtime):
    """A stand-in model: class c's logit is the stride-4 average of input channel c % 3, times (c + 1).

    It commutes with a horizontal flip, so the flip test must give the plain result back.
    """

    backend = "fake"
    max_batch = None

    def _infer(self, x):
        n, _, h, w = x.shape
        pooled = x.reshape(n, 3, h // 4, 4, w // 4, 4).mean(axis=(3, 5))
        return {"logits": np.stack([pooled[:, c % 3] * (c + 1) for c in range(19)], axis=1)}


def seg_manifest(size=(64, 128)):
    h, w = size
    return {
        "schema": "edgepose.manifest/1",
        "model": {"name": "tiny-seg", "kind": "segmentation", "dataset": "cityscapes", "num_classes": 19,
                  "classes": CLASSES, "palette_rgb": [list(c) for c in PALETTE]},
        "input": {"name": "input", "shape": [1, 3, h, w], "layout": "NCHW", "color": "RGB", "scale": 1 / 255.0,
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "outputs": [{"name": "logits", "role": "logits", "stride": 4, "shape": [1, 19, h // 4, w // 4],
                     "layout": "NCHW"}],
    }  # fmt: skip


def test_pipeline_labels_a_frame_and_the_flip_test_undoes_the_mirror():
    import skimage.data

    manifest = seg_manifest()
    frame = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[:300, :400]
    runtime = _PoolRuntime("unused", manifest)
    assert pipeline_class(manifest) is SegmentationPipeline
    plain = open_pipeline("unused", manifest=manifest, runtime=runtime)(frame)
    flipped = SegmentationPipeline("unused", runtime=runtime, manifest=manifest, flip=True)(frame)
    assert plain["labels"].shape == (300, 400) and set(plain["timings"]) == {"pre", "model", "post"}
    assert plain["shares"].sum() == pytest.approx(1.0)
    # Flip-equivariant stand-in: every pixel keeps its class (ties aside: none on a real photo).
    assert (plain["labels"] == flipped["labels"]).mean() > 0.999
    with pytest.raises(EdgeposeError, match="role 'logits'"):
        SegmentationPipeline("unused", runtime=runtime, manifest={**manifest, "outputs": []})
    with pytest.raises(EdgeposeError, match="unknown model kind 'depth'"):
        pipeline_class({"model": {"kind": "depth"}})


def test_every_model_kind_has_a_pipeline():
    from edgepose.device.kinds import KINDS
    from edgepose.device.pipeline import PIPELINES
    from edgepose.models.registry import list_models

    assert tuple(PIPELINES) == KINDS
    assert {spec.kind for spec in list_models()} <= set(KINDS)


def test_legend_lists_the_largest_classes_in_the_bottom_left():
    frame = np.full((200, 300, 3), 255, np.uint8)
    shares = np.zeros(19)
    shares[[0, 13]] = [0.75, 0.25]
    decoder = SegmentationDecoder(CLASSES, PALETTE, 4)
    draw_class_legend(frame, CLASSES, shares, decoder.palette_bgr)
    drawn = np.argwhere((frame != 255).any(axis=2))
    assert drawn[:, 0].min() > 100 and drawn[:, 1].max() < 150  # bottom-left corner only
    # The swatches carry the classes' colours.
    colours = {tuple(int(v) for v in px) for px in frame.reshape(-1, 3)}
    assert (128, 64, 128) in colours and (142, 0, 0) in colours
