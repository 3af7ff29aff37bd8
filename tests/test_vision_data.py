"""Image data: decoding every kind of file, folder/CSV/torchvision sources, bad files, transforms."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import torchlab
from torchlab.config import load_config
from torchlab.data.base import SourceContext
from torchlab.data.loaders import build_loader
from torchlab.data.vision.dataset import ImageCollate, ImageDataset, Item
from torchlab.data.vision.files import ImageReadError, check_image, load_image, read_image
from torchlab.data.vision.inspect import show_batch, validate_data
from torchlab.data.vision.transforms import PRESETS, batch_mixer, train_transform
from torchlab.errors import ConfigError, DataError
from torchlab.models import input_needs
from torchlab.registry import DATASETS

CONTEXT = SourceContext(val=0.25, test=0.25, stratify=True, seed=0, target_kind="categorical")


def write_folder(root: Path, classes: dict[str, int], size: int = 12, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: each class a distinct colour plus noise."""
    rng = np.random.default_rng(seed)
    for c, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.full((size, size, 3), 40 + 80 * c, dtype=np.int16)
            pixels += rng.integers(-20, 20, pixels.shape)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def folder_overrides(root: Path, **source: object) -> dict[str, object]:
    return {
        "data.source": {"name": "image-folder", "root": str(root), "size": 16, **source},
        "data.batch_size": 4,
        "data.split": {"val": 0.25, "test": 0.25},
        "model": {"name": "cnn", "channels": [4]},
        "trainer.max_epochs": 1,
        "trainer.progress": "none",
        "baseline": "none",
        "data.num_workers": 0,
    }


# --- reading one image ---------------------------------------------------------------------


def test_every_pillow_mode_comes_out_in_the_wanted_channels(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 0  # one fully transparent pixel: composited on white
    rgba[1:, :, 3] = 255
    rgba[0, 1:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((4, 6), 90, np.uint8), "L").save(tmp_path / "gray.png")
    palette = Image.new("P", (6, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    Image.fromarray(np.full((4, 6), 65535, np.uint16)).save(tmp_path / "deep.png")  # 16-bit

    for name in ("rgba", "gray", "palette", "deep"):
        for channels in (1, 3):
            image = load_image(tmp_path / f"{name}.png", channels)
            assert image.shape == (channels, 4, 6) and image.dtype == torch.uint8, name
    rgb = load_image(tmp_path / "rgba.png", 3)
    assert rgb[:, 0, 0].tolist() == [255, 255, 255]  # transparent -> white, not black
    assert rgb[:, 1, 1].tolist() == [200, 0, 0]
    assert load_image(tmp_path / "palette.png", 3)[:, 0, 0].tolist() == [10, 200, 30]
    assert load_image(tmp_path / "deep.png", 1).max().item() == 255  # 65535 -> 255
    gray = read_image(tmp_path / "gray.png", 3)
    assert gray.dtype == torch.float32 and torch.allclose(gray, torch.full_like(gray, 90 / 255))


@pytest.mark.parametrize("channels", [1, 3])
def test_decoded_images_become_the_inputs_the_float_path_gives(channels: int) -> None:
    """The uint8 lookup (images at the model's size) and the resize path both equal reading
    the pixels as floats in [0, 1] and normalising them, to the bit."""
    from torchlab.data.vision.images import ImageFeaturizer
    from torchlab.data.vision.pixels import PixelFeaturizer

    rng = np.random.default_rng(0)
    shape = (6, 5) if channels == 1 else (6, 5, 3)
    same = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)]
    other = [rng.integers(0, 256, (9, 4, 3)[: len(shape)], dtype=np.uint8)]
    featurizers = [
        ImageFeaturizer(size=(6, 5), channels=channels, mean=[0.3, 0.5, 0.4][:channels], std=0.27),
        PixelFeaturizer(size=(6, 5), channels=channels),
    ]
    for featurizer in featurizers:
        for images in (same, other, same + other):
            floats = [torch.from_numpy(i).view(*i.shape[:2], -1).permute(2, 0, 1) for i in images]
            expected = [featurizer.normalize(f.float().div_(255.0)[None])[0] for f in floats]
            got = featurizer.uint8_to_inputs(images)
            assert got.dtype == torch.float32 and torch.equal(got, torch.stack(expected))


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    image = Image.fromarray(np.zeros((4, 10, 3), np.uint8))  # 10 wide, 4 high
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg", 3).shape == (3, 10, 4)


def test_bad_files_are_errors_naming_the_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "junk.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match=r"junk.png' cannot be read"):
        load_image(tmp_path / "junk.png", 3)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut.png"):
        load_image(tmp_path / "cut.png", 3)
    with pytest.raises(DataError, match=r"nowhere.png' does not exist"):
        load_image(tmp_path / "nowhere.png", 3)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's bomb limit, made small
    with pytest.raises(DataError, match=r"big.png' is too large"):
        load_image(tmp_path / "big.png", 1)


# --- sources -------------------------------------------------------------------------------


def test_image_folder_splits_by_class_folders(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", {"cat": 8, "dog": 8})
    bundle = DATASETS.build(load_config("digits", folder_overrides(root)).data.source, "s", CONTEXT)
    assert bundle.spec.class_names == ("cat", "dog") and bundle.spec.input_shape == (3, 16, 16)
    assert bundle.summary["sizes"] == {"train": 8, "val": 4, "test": 4}
    assert bundle.summary["class_counts"]["test"] == [2, 2]  # stratified
    files = [f for split in ("train", "val", "test") for f in bundle.split(split).files]
    assert len(set(files)) == 16  # every image in exactly one split
    image, label = bundle.test[0][:2]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label in (0, 1)


def test_image_folder_uses_given_split_folders(tmp_path: Path) -> None:
    write_folder(tmp_path / "data" / "train", {"a": 6, "b": 6})
    write_folder(tmp_path / "data" / "test", {"a": 2, "b": 1})
    source = load_config("digits", folder_overrides(tmp_path / "data")).data.source
    bundle = DATASETS.build(source, "s", CONTEXT)
    assert bundle.summary["sizes"]["test"] == 3  # test/ as given
    assert all("test" in str(f) for f in bundle.test.files)
    assert bundle.summary["sizes"]["train"] + bundle.summary["sizes"]["val"] == 12


def test_image_csv_reads_paths_relative_to_the_csv(tmp_path: Path) -> None:
    write_folder(tmp_path / "imgs", {"x": 4, "y": 4})
    rows = [f"imgs/{c}/{i}.png,{c}" for c in "xy" for i in range(4)]
    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    overrides = folder_overrides(tmp_path)
    overrides["data.source"] = {"name": "image-csv", "csv": str(tmp_path / "list.csv"), "size": 8}
    bundle = DATASETS.build(load_config("digits", overrides).data.source, "s", CONTEXT)
    assert bundle.spec.class_names == ("x", "y") and len(bundle.train) == 4
    (tmp_path / "bad.csv").write_text("file,label\nimgs/x/0.png,x\n")
    overrides["data.source"]["csv"] = str(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"bad.csv' needs a header with 'path' and 'label'"):
        DATASETS.build(load_config("digits", overrides).data.source, "s", CONTEXT)


def damaged_png(path: Path) -> Path:
    """A PNG whole from header to end marker, with zeros over the middle of its pixel data:
    only decoding it finds the damage."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 200] = bytes(200)
    path.write_bytes(bytes(data))
    return path


def test_check_image_finds_empty_foreign_and_cut_files_cheaply(tmp_path: Path) -> None:
    photo = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    Image.fromarray(photo).save(tmp_path / "good.jpg", quality=90)
    Image.fromarray(photo).save(tmp_path / "good.png")
    jpeg, png = (tmp_path / "good.jpg").read_bytes(), (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "cut.png").write_bytes(png[: len(png) - 30])
    (tmp_path / "trailer.jpg").write_bytes(jpeg + b"camera data after the end marker" * 8)
    (tmp_path / "notes.png").write_text("a text file, not a picture\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    damaged_png(tmp_path / "damaged.png")

    def problem(name: str) -> str | None:
        try:
            check_image(tmp_path / name)
        except ImageReadError as exc:
            return exc.reason
        return None

    assert problem("good.jpg") is None and problem("good.png") is None
    assert problem("trailer.jpg") is None  # decoded to tell trailing bytes from a cut file
    assert "truncated" in problem("cut.jpg") and problem("cut.png").startswith("cannot be read")
    assert problem("empty.jpg") == "is empty (0 bytes)"
    assert "cannot identify image file" in problem("notes.png")
    assert problem("damaged.png") is None  # found at its first read instead
    with pytest.raises(ImageReadError, match=r"damaged.png' cannot be read"):
        load_image(tmp_path / "damaged.png", 3)


def test_on_error_fail_stops_before_training_naming_the_file(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", {"cat": 8, "dog": 8})
    (root / "cat" / "broken.png").write_bytes(b"garbage")
    source = load_config("digits", folder_overrides(root, on_error="fail")).data.source
    with pytest.raises(DataError, match=r"broken.png' cannot be read.*on_error=skip"):
        DATASETS.build(source, "s", CONTEXT)


def test_bad_files_are_skipped_by_default_and_counted_out_of_the_splits(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", {"cat": 8, "dog": 8})
    for name in ("cat", "dog"):  # found by the check before the splits are cut
        for i in range(2):
            (root / name / f"zz-broken-{i}.png").write_bytes(b"garbage")
    damaged_png(root / "dog" / "zz-damaged.png")  # found when first read, in some split
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = torchlab.train("digits", folder_overrides(root), output_dir=tmp_path / "runs")
    shown = [str(w.message) for w in caught]
    assert any("Skipped 4 of 21 image files" in m and "zz-broken-0.png" in m for m in shown)
    summary = json.loads((run.dir / "summary.json").read_text())
    skipped = {s["file"]: s["reason"] for s in summary["skipped_files"]}
    assert sorted(Path(f).name for f in skipped) == [
        "zz-broken-0.png", "zz-broken-0.png", "zz-broken-1.png", "zz-broken-1.png",
        "zz-damaged.png",
    ]  # fmt: skip
    data = json.loads((run.dir / "data.json").read_text())
    assert sum(data["sizes"].values()) == 21 - 4  # the damaged file passed the check
    assert sum(summary["sizes"].values()) == 21 - 5  # ... and was counted out once read
    assert "broken data stream" in skipped[str(root / "dog" / "zz-damaged.png")]

    # In a batch the bad item is dropped, not replaced: no sample appears twice.
    dataset = ImageDataset(
        [root / "cat" / "0.png", root / "dog" / "zz-damaged.png", root / "dog" / "1.png"],
        [0, 1, 1], lambda x: x.float(), channels=3, on_error="skip",
    )  # fmt: skip
    batch = ImageCollate()([dataset[i] for i in range(3)])
    assert len(batch) == 2 and batch.target.tolist() == [0, 1]
    assert [b.path for b in batch.skipped] == [str(root / "dog" / "zz-damaged.png")]


def test_a_bad_file_met_by_a_loader_worker_is_one_line(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", {"cat": 3})
    files = [*sorted((root / "cat").iterdir()), damaged_png(root / "cat" / "damaged.png")]
    dataset = ImageDataset(files, [0] * 4, lambda x: x.float(), channels=3, on_error="fail")
    loader = build_loader(
        dataset, batch_size=2, shuffle=False, seed=0, device=torch.device("cpu"),
        num_workers=1, pin_memory=False, collate=ImageCollate(),
    )  # fmt: skip
    with pytest.raises(ImageReadError) as raised:
        list(loader.epoch(0))
    message = str(raised.value)
    assert message.startswith("Image '") and "damaged.png' cannot be read" in message
    assert "\n" not in message and "on_error=skip" in message  # no worker traceback inside


def test_torchvision_mnist_reads_its_own_file_format(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write_idx(path: Path, array: np.ndarray) -> None:  # MNIST's idx-ubyte format
        header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(
            f">{array.ndim}I", *array.shape
        )
        path.write_bytes(header + array.astype(np.uint8).tobytes())

    images = {
        prefix: rng.integers(0, 255, (n, 28, 28)) for prefix, n in (("train", 40), ("t10k", 10))
    }
    for prefix, array in images.items():
        write_idx(raw / f"{prefix}-images-idx3-ubyte", array)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(len(array)) % 2)
    source = {"name": "torchvision", "dataset": "MNIST", "root": str(tmp_path), "augment": "none"}
    config = load_config("digits", {"data.source": source})
    bundle = DATASETS.build(config.data.source, "s", CONTEXT)
    assert bundle.spec.input_shape == (1, 28, 28) and len(bundle.test) == 10
    assert len(bundle.train) + len(bundle.val) == 40
    first = bundle.test[0]
    assert first.label == 0 and first.image.shape == (1, 28, 28)
    assert torch.equal(bundle.test.read(0)[0], torch.from_numpy(images["t10k"][0].astype(np.uint8)))


def test_torchvision_offline_errors_say_what_to_do(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torchvision.datasets as tvd

    source = {"name": "torchvision", "dataset": "MNIST", "root": str(tmp_path)}
    with pytest.raises(DataError, match=r"MNIST is not in .*download=true"):
        DATASETS.build(load_config("digits", {"data.source": source}).data.source, "s", CONTEXT)
    # Downloading goes through torchvision's own code; an unreachable mirror stands for offline.
    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    source["download"] = True
    with pytest.raises(DataError, match=r"downloading it failed.*download is impossible"):
        DATASETS.build(load_config("digits", {"data.source": source}).data.source, "s", CONTEXT)


# --- transforms ----------------------------------------------------------------------------


def test_every_preset_gives_normalised_images_of_the_size() -> None:
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    for preset in PRESETS:
        out = train_transform(preset, 16, [0.5] * 3, [0.25] * 3)(image)
        assert out.shape == (3, 16, 16) and out.dtype == torch.float32, preset
    with pytest.raises(ConfigError, match=r"'heavy' does not exist"):
        train_transform("heavy", 16, [0.5] * 3, [0.25] * 3)


def test_mixup_and_cutmix_give_soft_targets_that_training_accepts(tmp_path: Path) -> None:
    mixer = batch_mixer(0.0, 1.0, num_classes=3)
    items = [Item(torch.full((3, 8, 8), float(i)), i % 3, True) for i in range(6)]
    batch = ImageCollate(mixer)(items)
    assert batch.target.shape == (6, 3)
    assert torch.allclose(batch.target.sum(1), torch.ones(6))
    root = write_folder(tmp_path / "pets", {"cat": 8, "dog": 8})
    run = torchlab.train(
        "digits", folder_overrides(root, mixup=0.4, cutmix=1.0), output_dir=tmp_path / "runs"
    )
    assert 0.0 <= run.metrics["test/accuracy"] <= 1.0  # evaluation used hard labels


def test_normalisation_follows_the_model_weights(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", {"cat": 4, "dog": 4})
    own = load_config("digits", folder_overrides(root))
    context = SourceContext(0.25, 0.25, True, 0, "categorical", input_needs(own.model))
    stats = DATASETS.build(own.data.source, "s", context).summary["normalization"]
    assert stats["mean"][0] == pytest.approx(
        80 / 255, abs=0.02
    )  # cats 40, dogs 120: their own mean
    imagenet = load_config(
        "digits",
        {**folder_overrides(root), "model": {"name": "mobilenet_v2", "weights": "imagenet"}},
    )
    context = SourceContext(0.25, 0.25, True, 0, "categorical", input_needs(imagenet.model))
    stats = DATASETS.build(imagenet.data.source, "s", context).summary["normalization"]
    assert stats == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_digits_few_shot_in_rgb() -> None:
    source = load_config(
        "digits", {"data.source": {"name": "digits", "size": 16, "channels": 3, "per_class": 3}}
    ).data.source
    bundle = DATASETS.build(source, "s", CONTEXT)
    assert bundle.train.inputs.shape == (30, 3, 16, 16)
    assert bundle.summary["class_counts"]["train"] == [3] * 10
    assert torch.equal(bundle.train.inputs[:, 0], bundle.train.inputs[:, 2])  # gray repeated


# --- validate-data and show-batch ----------------------------------------------------------


@pytest.mark.slow  # the CLI runs in a subprocess
def test_validate_data_lists_every_bad_file(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    root = write_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    (root / "cat" / "a-bad.png").write_bytes(b"nope")
    (root / "dog" / "b-bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    report = validate_data(
        "digits", [f"data.source={json.dumps(folder_overrides(root)['data.source'])}"]
    )
    assert report.checked == 14
    assert sorted(Path(p).name for p, _ in report.bad) == ["a-bad.png", "b-bad.jpg"]
    config = tmp_path / "pets.yaml"
    config.write_text(load_config("digits", folder_overrides(root)).to_yaml())
    result = cli("validate-data", str(config))
    assert result.returncode != 0
    assert "a-bad.png" in result.stderr and "b-bad.jpg" in result.stderr
    write_folder(tmp_path / "clean", {"cat": 3, "dog": 3})
    clean = validate_data(load_config("digits", folder_overrides(tmp_path / "clean")))
    assert clean.ok and str(clean) == "image-folder: 6 images checked, 0 bad"


def test_show_batch_writes_a_labelled_grid(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    config = load_config("digits", folder_overrides(root, augment="strong"))
    path = show_batch(config, tmp_path / "grid.png", count=6)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200
    with pytest.raises(torchlab.errors.RunError, match=r"already exists"):
        show_batch(config, tmp_path / "grid.png")


def test_predicting_a_folder_finds_the_images_in_its_class_folders(tmp_path: Path) -> None:
    from torchlab.data.vision.files import image_files

    for name in ("cats/a.png", "dogs/b.jpg", "dogs/deeper/c.png", ".thumbs/d.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in image_files([tmp_path])]
    assert found == ["cats/a.png", "dogs/b.jpg", "dogs/deeper/c.png"]
