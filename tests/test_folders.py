"""ImageNet-style folder datasets: a tiny folder of JPEGs and PNGs written by Pillow."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from netadjust.data import Normalize, batches, load, split, training_batches
from netadjust.errors import UserError

CLASSES = ("cat", "dog", "fox")


def write_folder(root, train_per_class=5, val_per_class=2):
    """Solid-colour images of assorted sizes and modes: class c has colour COLOURS[c]."""
    rng = np.random.default_rng(0)
    for split_name, count in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split_name / name
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = int(rng.integers(20, 60)), int(rng.integers(20, 60))
                colour = colour_of(label)
                image = Image.new("RGB", (w, h), colour)
                if i == 1:  # a grayscale PNG as well: converted to RGB on reading
                    Image.new("L", (w, h), colour[0]).save(folder / f"{i}.png")
                else:
                    image.save(folder / f"{i}.jpg", quality=100)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def colour_of(label):
    return (60 + 80 * label, 200 - 60 * label, 30 + 40 * label)


def test_scan_lists_classes_files_and_a_mixed_order(tmp_path):
    write_folder(tmp_path)
    train, test, info = load("imagenet", tmp_path, image_size=16)
    assert info.num_classes == 3 and info.image_size == 16 and info.in_channels == 3
    assert len(train) == 15 and len(test) == 6  # the text file is not an image
    for path, label in zip(train.paths, train.labels.tolist(), strict=True):
        assert path.split("/")[1] == CLASSES[label]
    assert len(set(train.labels[:6].tolist())) > 1  # --train-limit takes a mix of classes


def test_evaluation_batches_are_centre_crops_in_order(tmp_path):
    write_folder(tmp_path)
    _, test, info = load("imagenet", tmp_path, image_size=16, workers=0)
    normalize = Normalize(info, torch.device("cpu"))
    seen = []
    for images, labels in batches(test, 4, normalize):
        assert images.shape[1:] == (3, 16, 16) and images.dtype == torch.float32
        raw = images * torch.tensor(info.std).view(1, 3, 1, 1) + torch.tensor(info.mean).view(1, 3, 1, 1)
        for image, label in zip(raw, labels.tolist(), strict=True):
            colour = torch.tensor(colour_of(label)) / 255
            if test.paths[len(seen)].endswith(".png"):  # grayscale: its first channel, thrice
                colour = colour[:1].expand(3)
            # a solid colour survives any crop; JPEG rounds it by a step or two
            assert torch.allclose(image.mean((1, 2)), colour, atol=3 / 255)
            seen.append(label)
    assert seen == test.labels.tolist()


def test_training_crops_are_keyed_by_epoch_and_sample_not_by_worker(tmp_path):
    """Random resized crops and flips of a patterned image: the same generators give the
    same batches with 0 or 2 workers; another epoch's generators give other crops."""
    root = tmp_path / "data"
    for split_name in ("train", "val"):
        for name in CLASSES[:2]:
            folder = root / split_name / name
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = np.random.default_rng(i).integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    train, _, info = load("imagenet", root, image_size=12, workers=0)
    normalize = Normalize(info, torch.device("cpu"))

    def epoch(seed, workers, world=1, rank=0):
        data = train if workers == 0 else type(train)(**{**train.__dict__, "workers": workers})
        order, crops = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
        return list(training_batches(data, 4 // world, normalize, info, order, crops, rank, world))

    first, with_workers, other = epoch(0, 0), epoch(0, 2), epoch(5, 0)
    assert [b[2] for b in first] == [4, 2]  # global batch sizes
    for (a, la, _), (b, lb, _) in zip(first, with_workers, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(torch.cat([b[0] for b in first]), torch.cat([b[0] for b in other]))
    # two processes take the two halves of each global batch (crops keyed by sample index)
    halves = [epoch(0, 0, world=2, rank=r) for r in (0, 1)]
    for whole, part0, part1 in zip(first, *halves, strict=True):
        assert torch.equal(torch.cat([part0[0], part1[0]]), whole[0])
        assert torch.equal(torch.cat([part0[1], part1[1]]), whole[1])
        assert part0[2] == part1[2] == whole[2]
    # without augmentation the training images are the evaluation crops
    plain = list(training_batches(train, 6, normalize, None, torch.Generator(), torch.Generator()))
    order = torch.randperm(len(train), generator=torch.Generator())
    expected = next(batches(train.subset(order), 6, normalize))[0]
    assert torch.equal(plain[0][0], expected)


def test_validation_split_comes_from_the_training_folder(tmp_path):
    write_folder(tmp_path)
    train, test, _ = load("imagenet", tmp_path, image_size=16)
    kept, val = split(train, 0.2, seed=0)
    assert len(kept) + len(val) == len(train) and len(val) == 3
    assert all(path.startswith("train/") for path in val.paths)
    assert not set(val.paths) & set(kept.paths)


def test_bad_folders_and_files_are_named(tmp_path):
    with pytest.raises(UserError, match="no train/ folder"):
        load("imagenet", tmp_path)
    write_folder(tmp_path)
    (tmp_path / "val" / "wolf").mkdir()
    with pytest.raises(UserError, match="wolf"):
        load("imagenet", tmp_path)
    (tmp_path / "val" / "wolf").rmdir()
    from netadjust.data.download import ensure_downloaded

    with pytest.raises(UserError, match="cannot fetch imagenet"):
        ensure_downloaded("imagenet", str(tmp_path), None)
    with pytest.raises(UserError, match="--image-size is 4; give at least 8"):
        load("imagenet", tmp_path, image_size=4)
    broken = tmp_path / "val" / "dog" / "0.jpg"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated JPEG
    _, test, info = load("imagenet", tmp_path, image_size=16, workers=1)
    with pytest.raises(UserError, match="dog/0.jpg"):
        list(batches(test, 4, Normalize(info, torch.device("cpu"))))


def test_search_on_a_folder_dataset(tmp_path):
    from conftest import in_process
    from test_cli import assert_user_error

    data = write_folder(tmp_path / "data", train_per_class=8)
    out = tmp_path / "run"
    common = ["--dataset", "imagenet", "--data-dir", data, "--image-size", 16, "--workers", 1]
    tiny = ["--space", "resnet18-small", "--width-mult", "0.125", "--iterations", 1, "--epochs", 1]
    result = in_process("search", *common, *tiny, "--repeats", 1, "--batch-size", 8, "--out", out)
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["num_classes"] == 3 and config["model"]["image_size"] == 16
    assert config["data_sizes"] == {"train": 22, "val": 2, "test": 6}  # 10% of 24 held out
    final = json.loads((out / "final.json").read_text())
    assert set(final["widths"]) == set(final["original_widths"])
    too_small = in_process("search", *common[:4], "--image-size", 4, "--out", tmp_path / "x")
    assert_user_error(too_small, "8 pixels")


def test_default_workers_leave_the_training_its_cores(monkeypatch):
    from netadjust.data.folders import default_workers

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert (default_workers(cpu), default_workers(cuda)) == (0, 1)
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    assert (default_workers(cpu), default_workers(cuda)) == (8, 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 4 cores for each of 8 torchrun processes
    assert (default_workers(cpu), default_workers(cuda)) == (2, 3)
