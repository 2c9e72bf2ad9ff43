import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_cifar, write_idx, write_mnist_like
from netadjust.data import DATASETS, Normalize, augment, batches, load, read_idx, split, training_batches
from netadjust.data.download import RemoteFile, ensure_downloaded, fetch
from netadjust.errors import UserError


@pytest.mark.parametrize("compress", [False, True])
def test_idx_dataset_round_trip(tmp_path, compress):
    write_mnist_like(tmp_path, n_train=40, n_test=12, compress=compress)
    train, test, info = load("mnist", tmp_path)
    assert train.images.shape == (40, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.shape == (12,) and test.labels.dtype == torch.int64
    raw = read_idx(next(tmp_path.glob("train-images*")))
    assert torch.equal(train.images[:, 0], torch.from_numpy(raw.copy()))
    assert info.num_classes == 10 and not info.flip


def test_real_fashion_mnist(fashion_dir):
    train, test, info = load("fashion-mnist", fashion_dir)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    # the per-dataset normalisation constants fit the data
    mean = train.images.float().mean().item() / 255
    assert abs(mean - info.mean[0]) < 0.01


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("archive", [False, True])
def test_cifar_python_version(tmp_path, dataset, archive):
    write_cifar(tmp_path, dataset, per_batch=6, archive=archive)
    train, test, info = load(dataset, tmp_path)
    batches_in_train = 5 if dataset == "cifar10" else 1
    assert train.images.shape == (6 * batches_in_train, 3, 32, 32)
    assert test.images.shape == (6, 3, 32, 32)
    assert int(train.labels.max()) < info.num_classes


def test_cifar_pixels_are_in_channel_major_order(tmp_path):
    write_cifar(tmp_path, "cifar100", per_batch=2)
    import pickle

    raw = pickle.loads((tmp_path / "cifar-100-python" / "train").read_bytes(), encoding="bytes")
    train, _, _ = load("cifar100", tmp_path)
    assert train.images[1, 2, 0, 5] == raw[b"data"][1][2 * 1024 + 5]


def test_corrupt_files_name_the_problem(tmp_path):
    write_mnist_like(tmp_path, compress=True)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100])  # truncated gzip
    with pytest.raises(UserError, match="train-images"):
        load("mnist", tmp_path)
    target.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + b"\x00" * 20))  # wrong magic
    with pytest.raises(UserError, match="magic"):
        load("mnist", tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((64, 28, 28), np.uint8), compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(64, 12, np.uint8), compress=True)
    with pytest.raises(UserError, match="labels outside"):
        load("mnist", tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(63, np.uint8), compress=True)
    with pytest.raises(UserError, match="do not match"):
        load("mnist", tmp_path)


def test_bad_cifar_batch_and_missing_folder(tmp_path):
    with pytest.raises(UserError, match="--download"):
        load("cifar10", tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load("cifar10", tmp_path / "nothing")
    write_cifar(tmp_path, "cifar10", per_batch=4)
    import pickle

    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(bad))
    with pytest.raises(UserError, match="data_batch_3"):
        load("cifar10", tmp_path)


def test_pickles_with_code_are_refused(tmp_path):
    write_cifar(tmp_path, "cifar100", per_batch=2)
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-100-python" / "test").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UserError, match="not a CIFAR python batch"):
        load("cifar100", tmp_path)


def test_split_is_seeded_disjoint_and_complete():
    from netadjust.data import ImageSet

    data = ImageSet(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), torch.arange(100))
    train, val = split(data, 0.1, seed=3)
    again, _ = split(data, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90
    assert torch.equal(train.labels, again.labels)
    assert sorted(train.labels.tolist() + val.labels.tolist()) == list(range(100))
    other, _ = split(data, 0.1, seed=4)
    assert not torch.equal(other.labels, train.labels)


def test_process_shards_make_up_the_single_process_batches():
    from netadjust.data import ImageSet

    data = ImageSet(torch.randint(0, 256, (53, 1, 4, 4), dtype=torch.uint8), torch.arange(53))
    normalize = Normalize(DATASETS["mnist"], torch.device("cpu"))
    order = lambda: torch.Generator().manual_seed(7)  # noqa: E731  (the same on every process)
    single = [
        (labels.tolist(), size)
        for _, labels, size in training_batches(data, 12, normalize, None, order(), None)
    ]
    shards = [
        list(training_batches(data, 4, normalize, None, order(), None, rank=rank, world_size=3))
        for rank in range(3)
    ]
    assert all(len(shard) == len(single) == 5 for shard in shards)
    for step, (labels, size) in enumerate(single):
        union = [label for shard in shards for label in shard[step][1].tolist()]
        assert union == labels and all(shard[step][2] == size for shard in shards)
    last = list(training_batches(data, 4, normalize, None, order(), None, rank=2, world_size=3))[-1]
    assert len(last[1]) == 1  # the last global batch of 5 splits 2/2/1
    tiny = list(training_batches(data, 26, normalize, None, order(), None, rank=0, world_size=2))
    assert len(tiny) == 1  # the one image left over after 52 is fewer than 2 processes: dropped


def test_augment_crops_and_flips_whole_batches():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6).repeat(200, 1, 1, 1)
    out = augment(images, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    # every output is a window of the zero-padded (and possibly flipped) input
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(0, 400, 37):
        windows = [padded[i, :, y : y + 6, x : x + 6] for y in range(5) for x in range(5)]
        windows += [w.flip(2) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not torch.equal(out, images)
    unflipped = augment(images, padding=0, flip=False, generator=torch.Generator())
    assert torch.equal(unflipped, images)


def test_normalize_and_batches_cover_the_set_once():
    from netadjust.data import ImageSet

    info = DATASETS["fashion-mnist"]
    data = ImageSet(torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8), torch.arange(50))
    normalize = Normalize(info, torch.device("cpu"))
    seen = []
    for images, labels, _ in training_batches(
        data, 16, normalize, info, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    ):
        assert images.dtype == torch.float32
        seen += labels.tolist()
    assert sorted(seen) == list(range(50))
    plain = torch.cat([x for x, _ in batches(data, 16, normalize)])
    expected = (data.images.float() / 255 - info.mean[0]) / info.std[0]
    assert torch.allclose(plain, expected, atol=1e-5)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=served))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_verifies_checksums_from_a_local_server(tmp_path, local_server):
    served, url = local_server
    write_mnist_like(served, compress=True)
    files = [RemoteFile(p.name, md5(p)) for p in sorted(served.iterdir())]
    target = tmp_path / "data"
    written = fetch(files, url, target)
    assert len(written) == 4
    train, test, _ = load("mnist", target)
    assert len(train) == 64 and len(test) == 32

    corrupt = tmp_path / "corrupt"
    bad = [RemoteFile(files[0].name, "0" * 32)]
    with pytest.raises(UserError, match="MD5"):
        fetch(bad, url, corrupt)
    assert list(corrupt.iterdir()) == []  # nothing half-written is left

    with pytest.raises(UserError, match="cannot download"):
        fetch([RemoteFile("absent.gz", "0" * 32)], url, corrupt)


def test_download_of_files_that_are_not_the_official_ones_is_refused(tmp_path, local_server):
    served, url = local_server
    write_mnist_like(served, compress=True)
    with pytest.raises(UserError, match="published"):
        ensure_downloaded("fashion-mnist", str(tmp_path / "fm"), url)
    assert not any((tmp_path / "fm").iterdir())


def test_image_size_resizes_a_dataset_of_fixed_size_images(tmp_path):
    from conftest import write_mnist_like
    from netadjust.data import load

    folder = write_mnist_like(tmp_path / "mnist", n_train=20, n_test=10)
    train, test, info = load("mnist", folder)
    bigger_train, bigger_test, bigger = load("mnist", folder, image_size=56)
    assert info.image_size == 28 and bigger.image_size == 56
    assert bigger_train.images.shape == (20, 1, 56, 56) and bigger_test.images.shape == (10, 1, 56, 56)
    assert bigger_train.images.dtype == torch.uint8 and torch.equal(bigger_train.labels, train.labels)
    # the same picture at another side: each image's mean brightness kept, larger or smaller
    smaller_train, _, _ = load("mnist", folder, image_size=14)
    means = train.images.float().mean(dim=(1, 2, 3))
    for other in (bigger_train, smaller_train):
        assert torch.allclose(other.images.float().mean(dim=(1, 2, 3)), means, atol=2.0)
    same_train, _, same = load("mnist", folder, image_size=28)
    assert same.image_size == 28 and torch.equal(same_train.images, train.images)
