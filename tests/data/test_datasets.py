"""Every dataset loads from small files written here in the real on-disk formats."""

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from repeval import data
from repeval.data import DataOptions
from repeval.data.base import to_float
from repeval.errors import UserError


# ----------------------------------------------------------------------------- writers
def write_idx(path: Path, array: np.ndarray) -> None:
    """The MNIST idx format: magic (0, 0, dtype 0x08 = uint8, ndim), big-endian dims, bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_train, y_test = np.arange(n_train) % 10, np.arange(n_test) % 10
    write_idx(raw / "train-images-idx3-ubyte", x_train)
    write_idx(raw / "train-labels-idx1-ubyte", y_train)
    write_idx(raw / "t10k-images-idx3-ubyte", x_test)
    write_idx(raw / "t10k-labels-idx1-ubyte", y_test)
    return x_train, y_train, x_test, y_test


def fake_cifar10(root: Path, per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, per_batch).tolist())
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "labels": labels}, f)
        images[name] = (x, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return images


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- MNIST
def test_mnist_pads_to_32_with_minus_one_and_keeps_labels(tmp_path):
    x_train, y_train, x_test, y_test = fake_mnist(tmp_path)
    ds = data.load("mnist", DataOptions(tmp_path))
    assert ds.train.x.shape == (20, 1, 32, 32) and ds.test.x.shape == (10, 1, 32, 32)
    assert ds.train.x.dtype == torch.uint8 and ds.train.y.dtype == torch.int64
    assert torch.equal(ds.train.x[:, 0, 2:30, 2:30], torch.from_numpy(x_train))
    assert torch.equal(ds.test.y, torch.from_numpy(y_test.astype(np.int64)))
    border = to_float(ds.train.x)[:, :, :2, :]
    assert torch.all(border == -1.0)
    assert to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


def test_second_load_comes_from_the_compact_cache(tmp_path, monkeypatch):
    fake_mnist(tmp_path)
    first = data.load("mnist", DataOptions(tmp_path))
    import torchvision.datasets

    def refuse(*args, **kwargs):
        raise AssertionError("torchvision was called although a cache exists")

    monkeypatch.setattr(torchvision.datasets, "MNIST", refuse)
    second = data.load("mnist", DataOptions(tmp_path))
    assert torch.equal(first.train.x, second.train.x)
    assert first.fingerprint == second.fingerprint


def test_missing_local_dataset_names_folder_layout_and_option(tmp_path):
    with pytest.raises(UserError) as err:
        data.load("mnist", DataOptions(tmp_path))
    msg = err.value.message
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "--data-dir" in msg and "digits" in msg


def test_failed_download_is_a_user_error(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(UserError, match="download failed .*network is unreachable"):
        data.load("mnist", DataOptions(None))


# ----------------------------------------------------------------------------- CIFAR-10
@pytest.fixture
def official_md5s_of(monkeypatch):
    """Pretend the fake files are the official ones (torchvision checks md5s)."""
    from torchvision.datasets import CIFAR10

    def apply(root: Path):
        folder = root / "cifar-10-batches-py"
        monkeypatch.setattr(CIFAR10, "train_list",
                            [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
        monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
        monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})

    return apply


def test_cifar10_loads_channels_first_in_file_order(tmp_path, official_md5s_of):
    images = fake_cifar10(tmp_path)
    official_md5s_of(tmp_path)
    ds = data.load("cifar10", DataOptions(tmp_path))
    assert ds.train.x.shape == (20, 3, 32, 32) and ds.test.x.shape == (4, 3, 32, 32)
    x1, labels1 = images["data_batch_1"]
    assert torch.equal(ds.train.x[:4].reshape(4, 3072), torch.from_numpy(x1))  # R, G, B planes
    assert ds.train.y[:4].tolist() == labels1
    assert ds.info["verified"] == "md5 checked by torchvision"


def test_cifar10_checksum_mismatch_needs_explicit_option_and_is_recorded(tmp_path, official_md5s_of):
    fake_cifar10(tmp_path)
    official_md5s_of(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with open(batch, "rb") as f:
        content = pickle.load(f)
    content["data"][0, 0] ^= 1  # one changed pixel: a rebuilt or damaged copy
    with open(batch, "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(UserError) as err:
        data.load("cifar10", DataOptions(tmp_path))
    assert "data_batch_3" in err.value.message and "--allow-unverified" in err.value.message
    ds = data.load("cifar10", DataOptions(tmp_path, allow_unverified=True))
    assert ds.info["verified"].startswith("NO")
    assert ds.info["unverified_md5"] == {"data_batch_3": md5(batch)}
    assert int(ds.train.x[8].reshape(-1)[0]) == int(content["data"][0, 0])


# ----------------------------------------------------------------------------- SVHN
def fake_svhn(root: Path, split: str, n: int, seed: int):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1)  # 1..10, 10 means digit 0
    folder = root / "SVHN"
    folder.mkdir(exist_ok=True)
    savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
    return x, y


@pytest.fixture
def svhn_md5s(monkeypatch):
    from torchvision.datasets import SVHN

    def apply(root: Path):
        lists = {k: [v[0], v[1], md5(root / "SVHN" / v[1]) if (root / "SVHN" / v[1]).exists() else v[2]]
                 for k, v in SVHN.split_list.items()}
        monkeypatch.setattr(SVHN, "split_list", lists)

    return apply


def test_svhn_train_split_and_train_plus_extra(tmp_path, svhn_md5s):
    x_tr, y_tr = fake_svhn(tmp_path, "train", 12, 0)
    fake_svhn(tmp_path, "test", 5, 1)
    x_ex, _ = fake_svhn(tmp_path, "extra", 7, 2)
    svhn_md5s(tmp_path)
    ds = data.load("svhn", DataOptions(tmp_path))
    assert ds.train.x.shape == (12, 3, 32, 32) and ds.test.x.shape == (5, 3, 32, 32)
    assert torch.equal(ds.train.x[3], torch.from_numpy(x_tr[:, :, :, 3].transpose(2, 0, 1).copy()))
    assert ds.train.y.tolist() == [int(v) % 10 for v in y_tr[:, 0]]  # torchvision maps 10 -> 0
    both = data.load("svhn-extra", DataOptions(tmp_path))
    assert both.train.x.shape == (19, 3, 32, 32)
    assert torch.equal(both.train.x[12], torch.from_numpy(x_ex[:, :, :, 0].transpose(2, 0, 1).copy()))


def test_svhn_damaged_file_gets_one_paragraph(tmp_path, svhn_md5s):
    fake_svhn(tmp_path, "train", 4, 0)
    fake_svhn(tmp_path, "test", 4, 1)
    svhn_md5s(tmp_path)
    with open(tmp_path / "SVHN" / "train_32x32.mat", "ab") as f:
        f.write(b"garbage")
    with pytest.raises(UserError, match="train_32x32.mat does not match torchvision's md5"):
        data.load("svhn", DataOptions(tmp_path))


# ----------------------------------------------------------------------------- npz
def test_npz_pads_small_images_and_maps_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    x_train = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    np.savez(path, x_train=x_train, y_train=np.array([3, 7, 3, 9, 7, 3]),
             x_test=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), y_test=np.array([9, 7]))
    ds = data.load(f"npz:{path}")
    assert ds.train.x.shape == (6, 1, 32, 32)
    assert torch.equal(ds.train.x[:, 0, 2:30, 2:30], torch.from_numpy(x_train))
    assert ds.train.y.tolist() == [0, 1, 0, 2, 1, 0] and ds.test.y.tolist() == [2, 1]
    assert ds.num_classes == 3 and ds.info["classes"] == [3, 7, 9]
    assert "padded" in ds.info["rule"]


def test_npz_resizes_large_colour_images(tmp_path):
    path = tmp_path / "big.npz"
    x = np.full((3, 64, 48, 3), 200, np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(3), x_test=x[:1], y_test=np.arange(1))
    ds = data.load(f"npz:{path}")
    assert ds.train.x.shape == (3, 3, 32, 32) and int(ds.train.x.min()) == int(ds.train.x.max()) == 200
    assert "resized" in ds.info["rule"]
    assert data.get(f"npz:{path}").channels == 3


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((2, 8, 8), np.uint8), "y_train": np.zeros(2, int), "x_test": np.zeros((1, 8, 8), np.uint8)},
     "lacks array\\(s\\) y_test"),
    ({"x_train": np.zeros((2, 8, 8), np.float32), "y_train": np.zeros(2, int), "x_test": np.zeros((1, 8, 8), np.uint8),
      "y_test": np.zeros(1, int)}, "'x_train' has dtype float32, expected uint8"),
    ({"x_train": np.zeros((2, 8, 8, 5), np.uint8), "y_train": np.zeros(2, int), "x_test": np.zeros((1, 8, 8), np.uint8),
      "y_test": np.zeros(1, int)}, "'x_train' has shape \\(2, 8, 8, 5\\)"),
    ({"x_train": np.zeros((2, 8, 8), np.uint8), "y_train": np.zeros(3, int), "x_test": np.zeros((1, 8, 8), np.uint8),
      "y_test": np.zeros(1, int)}, "'y_train' has shape \\(3,\\)"),
])
def test_npz_errors_name_the_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match=message):
        data.load(f"npz:{path}")


def test_npz_missing_or_unreadable_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.load(f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable .npz"):
        data.load(f"npz:{tmp_path / 'junk.npz'}")


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(UserError, match="Unknown dataset 'mnsit'. Known datasets: mnist"):
        data.get("mnsit")


# ----------------------------------------------------------------------------- digits, lines
def test_digits_is_a_fixed_stratified_split():
    ds = data.load("digits")
    assert ds.train.x.shape == (1257, 1, 32, 32) and ds.test.x.shape == (540, 1, 32, 32)
    assert np.bincount(ds.test.y.numpy()).tolist() == [54, 55, 53, 55, 54, 55, 54, 54, 52, 54]
    assert ds.fingerprint == data.load("digits").fingerprint  # deterministic


def test_lines_render_properties():
    from repeval.data.lines import draw_line

    for angle in (0.0, np.pi / 2, np.pi, 3 * np.pi / 2):  # no overlapping cells: exact coverage
        image = draw_line(angle)
        assert ((image + 1) / 2).sum() == pytest.approx(30.0)
    for angle in np.linspace(0, 2 * np.pi, 97):
        image = draw_line(angle)
        assert image.min() == -1.0 and image.max() <= 1.0
        assert 0 < ((image + 1) / 2).sum() <= 30.0 + 1e-9
    horizontal = draw_line(0.0)  # from the centre to the right edge, rows 15-16
    assert np.all(horizontal[15:17, 16:31] == 1.0) and np.all(horizontal[:15] == -1.0)


@pytest.mark.slow
def test_lines_dataset_is_seeded_and_labelled_by_angle():
    ds = data.load("lines")
    assert ds.train.x.shape == (32768, 1, 32, 32) and ds.test.x.shape == (5000, 1, 32, 32)
    assert ds.train.x.dtype == torch.float32
    expected = (10 * ds.bank.test_factors / (2 * np.pi - 1e-6)).astype(np.int64)
    assert ds.test.y.tolist() == expected.tolist()
    assert torch.equal(data.load("lines").test.x[:50], ds.test.x[:50])


# ----------------------------------------------------------------------------- opt-in real data
def test_real_mnist(real_data_root):
    ds = data.load("mnist", DataOptions(real_data_root))
    assert len(ds.train) == 60_000 and len(ds.test) == 10_000
    raw_mean = ds.train.x[:, :, 2:30, 2:30].double().mean().item() / 255
    assert raw_mean == pytest.approx(0.1307, abs=5e-5)


def test_real_cifar10_rebuild_needs_the_explicit_option(real_data_root):
    if not (real_data_root / "cifar-10-batches-py").is_dir():
        pytest.skip("no cifar-10-batches-py under REPEVAL_TEST_DATA")
    try:
        ds = data.load("cifar10", DataOptions(real_data_root))
    except UserError as err:  # a rebuild whose md5s differ from the official ones
        assert "--allow-unverified" in err.message
        ds = data.load("cifar10", DataOptions(real_data_root, allow_unverified=True))
        assert ds.info["verified"].startswith("NO")
    assert len(ds.train) == 50_000 and len(ds.test) == 10_000 and ds.channels == 3
    assert np.bincount(ds.test.y.numpy()).tolist() == [1000] * 10


def test_real_data_root_lists_mnist_and_cifar10_as_available(real_data_root):
    options = DataOptions(real_data_root)
    assert data.get("mnist").locate(options) is not None
    if (real_data_root / "cifar-10-batches-py").is_dir():
        assert data.get("cifar10").locate(options) is not None


@pytest.mark.parametrize("y_train, y_test, message", [
    ([0, 1, -1], [0], r"y_train holds negative labels \(-1 at 1 of 3 rows, first at row 2\)"),
    ([4, 4, 4], [4], "every label in y_train is 4: the probes need at least two classes"),
    ([0, 1, 1], [2], r"y_test holds the class\(es\) 2, which no image of y_train has"),
])
def test_npz_labels_are_classes_of_the_train_split(tmp_path, y_train, y_test, message):
    """Labels are class numbers >= 0 (−1, "unlabelled", is no class), at least two classes in
    train, and every test class among them: otherwise kNN scores 0.0 and k-means NMI 1.0."""
    path = tmp_path / "labels.npz"
    np.savez(path, x_train=np.zeros((3, 8, 8), np.uint8), y_train=np.array(y_train),
             x_test=np.zeros((1, 8, 8), np.uint8), y_test=np.array(y_test))
    with pytest.raises(UserError, match=message):
        data.load(f"npz:{path}")


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "objects.npz"
    objects = np.empty(3, dtype=object)
    objects[:] = [{"a": 1}, None, "x"]
    np.savez(path, x_train=objects, y_train=np.arange(3), x_test=np.zeros((1, 8, 8), np.uint8), y_test=np.arange(1))
    with pytest.raises(UserError, match="array 'x_train' holds Python objects \\(dtype object\\), which repeval never "
                                        "unpickles"):
        data.load(f"npz:{path}")


@pytest.mark.parametrize("change, message", [
    ({"x_train": np.full((4, 1, 32, 32), np.nan, np.float32)}, "train images are torch.float32 with NaN"),
    ({"x_test": np.zeros((4, 3, 32, 32), np.uint8)}, "train examples are 1×32×32 images, test examples 3×32×32 images"),
    ({"y_train": np.array([0, 1, 0, 7])}, "train labels run from 0 to 7, outside 0..2"),
    ({"y_train": np.zeros(4, int), "y_test": np.zeros(4, int)}, "every train label is 0"),
    ({"y_test": np.array([0, 1, 2, 2])}, r"test labels hold class\(es\) 2 that no train image has"),
])
def test_every_loaded_dataset_is_checked_whatever_its_loader(change, message):
    """A plugin's loader is trusted no more than a user's npz: what it returns is checked once."""
    from repeval.data import DatasetEntry
    from repeval.data.base import make_dataset

    arrays = {"x_train": np.zeros((4, 1, 32, 32), np.uint8), "y_train": np.array([0, 1, 0, 1]),
              "x_test": np.zeros((4, 1, 32, 32), np.uint8), "y_test": np.array([1, 0, 1, 0]), **change}
    entry = DatasetEntry("mine", "a plugin's", 1, 3, 4, 4, depth=16, latent_dims=(32,),
                         loader=lambda options: make_dataset("mine", num_classes=3, info={}, **arrays),
                         locate=lambda options: None)
    with pytest.raises(UserError, match=f"Dataset 'mine': (the )?{message}"):
        entry.load(DataOptions())
