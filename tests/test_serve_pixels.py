"""Serving segmentation and detection runs: the answers of ``torchlab predict`` for the same
images (boxes in the images' own pixels, class masks and fractions), from a run directory
and a TorchScript export, through the dynamic batcher, with 4xx answers for bad images."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import torchlab
from serving import LiveServer, fuzz
from torchlab.engine.predict import load_predictor
from torchlab.serve import ServeSettings, create_app
from torchlab.serve.batcher import DynamicBatcher
from torchlab.testing import shapes_smoke

SETTINGS = ServeSettings(max_batch=8, max_wait_ms=20, max_pixels=200_000)


def scenes(root: Path, resized: tuple[int, int]) -> list[Path]:
    """Three generated scenes at the trained size and a fourth resized to ``resized`` (w, h),
    so answers must be scaled back to an image's own pixels."""
    images = sorted((root / "shapes" / "images").glob("*.png"))[:3]
    other = root / "other.png"
    Image.open(images[0]).convert("RGB").resize(resized, Image.BILINEAR).save(other)
    return [*images, other]


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def served(predictor) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with LiveServer(create_app(predictor, SETTINGS)) as client:
        yield client


@pytest.fixture(scope="module")
def seg(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("seg")
    run = torchlab.train("shapes-seg", shapes_smoke("shapes-seg", root), output_dir=root / "runs")
    images = scenes(root, (48, 40))
    predictor = load_predictor(run.dir)
    features, _ = predictor.featurizer.load_inputs(images)
    return {
        "run": run,
        "images": images,
        "frame": torchlab.predict(run.dir, images, output=root / "pred"),
        "labels": predictor(features).argmax(1),  # (N, 32, 32): what predict's overlays show
    }


@pytest.fixture(scope="module")
def seg_client(seg) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    yield from served(load_predictor(seg["run"].dir))


@pytest.fixture(scope="module")
def det(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("det")
    run = torchlab.train("shapes-det", shapes_smoke("shapes-det", root), output_dir=root / "runs")
    images = scenes(root, (96, 80))
    frame = torchlab.predict(run.dir, images, output=root / "pred")
    assert len(frame) > 0, "the smoke detector found no box to compare"
    return {"run": run, "images": images, "frame": frame, "root": root}


@pytest.fixture(scope="module")
def det_client(det) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    yield from served(load_predictor(det["run"].dir))


def check_masks(predictions: list[dict], seg: dict, at: list[int]) -> None:  # type: ignore[type-arg]
    names = seg["run"].spec.class_names
    for prediction, i in zip(predictions, at, strict=True):
        mask = Image.open(io.BytesIO(base64.b64decode(prediction["mask"])))
        assert mask.mode == "L" and mask.size == (32, 32)  # the model's size
        assert np.array_equal(np.asarray(mask), seg["labels"][i].numpy())
        want = [seg["frame"].iloc[i][f"fraction_{name}"] for name in names]
        np.testing.assert_allclose([prediction["fractions"][n] for n in names], want, atol=1e-6)


def check_boxes(predictions: list[dict], det: dict, at: list[int]) -> None:  # type: ignore[type-arg]
    frame = det["frame"]
    for prediction, i in zip(predictions, at, strict=True):
        want = frame[frame["id"] == str(det["images"][i])]
        found = prediction["detections"]
        assert [d["label"] for d in found] == want["label"].tolist()
        boxes = [d["box"] for d in found]
        np.testing.assert_allclose(
            np.asarray(boxes).reshape(-1, 4), want[["x0", "y0", "x1", "y1"]], atol=1e-3
        )
        np.testing.assert_allclose([d["score"] for d in found], want["score"], atol=1e-4)


@pytest.mark.slow
def test_masks_and_fractions_are_those_of_torchlab_predict(seg, seg_client) -> None:  # type: ignore[no-untyped-def]
    answer = seg_client.post("/predict", json={"images": [b64(p) for p in seg["images"]]})
    assert answer.status_code == 200, answer.text
    check_masks(answer.json()["predictions"], seg, [0, 1, 2, 3])
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in seg["images"][2:]]
    upload = seg_client.post("/predict/upload", files=files)
    assert upload.status_code == 200, upload.text
    check_masks(upload.json()["predictions"], seg, [2, 3])
    raw = seg_client.post(
        "/predict/image",
        content=seg["images"][1].read_bytes(),
        headers={"Content-Type": "image/png"},
    )
    assert raw.status_code == 200, raw.text
    check_masks(raw.json()["predictions"], seg, [1])


@pytest.mark.slow
def test_boxes_are_those_of_torchlab_predict_in_the_images_own_pixels(det, det_client) -> None:  # type: ignore[no-untyped-def]
    answer = det_client.post("/predict", json={"images": [b64(p) for p in det["images"]]})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    check_boxes(predictions, det, [0, 1, 2, 3])
    resized = [d["box"] for d in predictions[3]["detections"]]
    assert resized and max(max(b[0], b[2]) for b in resized) > 64  # 96 px wide, scaled back
    upload = det_client.post(
        "/predict/upload", files=[("files", ("x.png", det["images"][3].read_bytes(), "image/png"))]
    )
    assert upload.status_code == 200, upload.text
    check_boxes(upload.json()["predictions"], det, [3])
    raw = det_client.post(
        "/predict/image",
        content=det["images"][3].read_bytes(),
        headers={"Content-Type": "image/png"},
    )
    assert raw.status_code == 200, raw.text
    check_boxes(raw.json()["predictions"], det, [3])  # boxes in the pixels of the image sent
    schemas = det_client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Boxes"]["required"] == ["detections"]  # the detection task's own answer
    assert set(schemas["Box"]["properties"]) == {"box", "label", "score"}


@pytest.mark.slow
def test_concurrent_requests_each_get_their_own_boxes(det, det_client) -> None:  # type: ignore[no-untyped-def]
    def ask(i: int) -> tuple[int, dict]:  # type: ignore[type-arg]
        at = i % len(det["images"])
        answer = det_client.post("/predict", json={"images": [b64(det["images"][at])]})
        assert answer.status_code == 200, answer.text
        return at, answer.json()["predictions"][0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(12)))
    for at, prediction in answers:
        check_boxes([prediction], det, [at])


@pytest.mark.slow
def test_batcher_slices_detections_per_request(det) -> None:  # type: ignore[no-untyped-def]
    """Requests of 1, 2 and 1 images run as one batch (a list of dicts) and each gets its own."""
    predictor = load_predictor(det["run"].dir)
    features, _ = predictor.featurizer.load_inputs(det["images"])  # (4, 3, 64, 64)
    parts = [features[:1], features[1:3], features[3:]]

    async def submit_all() -> tuple[list, DynamicBatcher]:  # type: ignore[type-arg]
        batcher = DynamicBatcher(predictor, max_batch=8, max_wait=2.0)
        await batcher.start()
        try:
            answers = await asyncio.gather(*(batcher.submit(p, 60) for p in parts))
        finally:
            await batcher.stop()
        return answers, batcher

    answers, batcher = asyncio.run(submit_all())
    assert batcher.metrics.value("torchlab_batch_rows_count") == 1
    assert batcher.metrics.value("torchlab_batch_rows_sum") == 4
    assert [len(a) for a in answers] == [1, 2, 1]
    alone = [predictor(part) for part in parts]
    for got, want in zip(answers, alone, strict=True):
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g["labels"], w["labels"])
            torch.testing.assert_close(g["boxes"], w["boxes"], atol=1e-3, rtol=0)


@pytest.mark.slow
def test_a_torchscript_export_serves_the_same_boxes(det) -> None:  # type: ignore[no-untyped-def]
    out = torchlab.export(det["run"], "torchscript", output=det["root"] / "ts")
    for client in served(load_predictor(out)):
        answer = client.post("/predict", json={"images": [b64(p) for p in det["images"]]})
        assert answer.status_code == 200, answer.text
        check_boxes(answer.json()["predictions"], det, [0, 1, 2, 3])
        assert client.get("/metadata").json()["format"] == "torchscript"


@pytest.mark.slow
def test_bad_images_get_a_4xx_naming_the_field_and_the_schema_shows_the_answers(
    seg, seg_client
) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ({"images": ["not base64!"]}, 400, "Field 'images.0' is not valid base64"),
        ({"images": [base64.b64encode(b"no image").decode()]}, 422, "Field 'images'"),
        ({"images": []}, 422, "Field 'images'"),
    ]
    for body, status, message in cases:
        answer = seg_client.post("/predict", json=body)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]
    big = io.BytesIO()
    Image.new("RGB", (600, 400)).save(big, "PNG")
    answer = seg_client.post("/predict/upload", files=[("files", ("big.png", big.getvalue()))])
    assert answer.status_code == 422 and "Field 'files'" in answer.json()["error"]
    assert "600x400 pixels" in answer.json()["error"]
    answer = seg_client.post("/predict", json={"images": [b64(seg["images"][0])]})
    assert answer.status_code == 200, answer.text
    schema = seg_client.get("/openapi.json").json()
    mask = schema["components"]["schemas"]["Mask"]  # the segmentation task's own answer
    assert set(mask["required"]) == {"mask", "fractions"}
    assert "detections" not in mask["properties"] and "label" not in mask["properties"]
    assert "/predict/upload" in schema["paths"]


@pytest.mark.slow
def test_an_onnx_segmentation_export_serves_the_same_masks(seg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = torchlab.export(seg["run"], "onnx", output=tmp_path / "onnx")
    for client in served(load_predictor(out)):
        answer = client.post("/predict", json={"images": [b64(p) for p in seg["images"]]})
        assert answer.status_code == 200, answer.text
        check_masks(answer.json()["predictions"], seg, [0, 1, 2, 3])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["seg", "det"])
def test_fuzzing_the_openapi_schema_finds_no_server_error(task, request) -> None:  # type: ignore[no-untyped-def]
    client = request.getfixturevalue(f"{task}_client")
    statuses = fuzz(client, max_examples=30)
    assert statuses & {400, 422}, statuses
    images = request.getfixturevalue(task)["images"]
    assert client.post("/predict", json={"images": [b64(images[0])]}).status_code == 200
