"""MNIST, SVHN and CIFAR-10 through ``torchvision.datasets``, exactly as the paper.

- Pixels stay uint8; the [-1, 1] scaling happens per batch on the device.
- MNIST 28×28 is padded with 2 px of 0 (= −1 after scaling) to 32×32 (``docs/protocol.md`` §2.8).
- SVHN: the ``train`` split (73,257) by default; ``svhn-extra`` is the paper's
  train+extra stream (604,388). Labels are torchvision's (digit 0 is class 0).
- CIFAR-10: native 32×32×3.

Where the files come from: ``--data-dir`` / ``REPEVAL_DATA`` (torchvision layout, read
only), else downloaded into ``<cache>/data``. The first load writes a compact ``.npz`` into
``<cache>/arrays`` keyed by the source files (path, size, mtime), so later loads skip
torchvision's per-item path and take well under a second.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from repeval.data.base import Dataset, fingerprint_arrays, make_dataset
from repeval.data.registry import DataOptions, DatasetEntry
from repeval.errors import UserError
from repeval.paths import atomic_write_bytes, atomic_write_text, cache_dir, file_digest

# name -> (folder under the data root, files that must exist there)
LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "mnist": ("MNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "svhn": ("SVHN", ("train_32x32.mat", "test_32x32.mat")),
    "svhn-extra": ("SVHN", ("train_32x32.mat", "extra_32x32.mat", "test_32x32.mat")),
    "cifar10": ("cifar-10-batches-py", ("data_batch_1", "data_batch_2", "data_batch_3",
                                        "data_batch_4", "data_batch_5", "test_batch",
                                        "batches.meta")),
}


def _root(options: DataOptions) -> Path:
    return Path(options.data_dir).expanduser() if options.data_dir else cache_dir() / "data"


def _locate(name: str) -> Callable[[DataOptions], str | None]:
    def locate(options: DataOptions) -> str | None:
        folder, files = LAYOUT[name]
        where = _root(options) / folder
        return str(where) if all((where / f).is_file() for f in files) else None

    return locate


def _missing_message(name: str, options: DataOptions, cause: str) -> str:
    folder, files = LAYOUT[name]
    where = _root(options) / folder
    hint = ("Point --data-dir (or REPEVAL_DATA) at a folder holding that layout"
            if options.data_dir else
            "Check the network, or point --data-dir (or REPEVAL_DATA) at a local copy in that layout")
    return (
        f"Dataset {name!r} is not available: {cause}. Searched {where} for "
        f"{', '.join(files)} (torchvision layout: <data-dir>/{folder}/...). {hint}. "
        "`--dataset digits` runs fully offline."
    )


def _source_key(name: str, options: DataOptions) -> str:
    folder, files = LAYOUT[name]
    where = (_root(options) / folder).resolve()
    parts = [name, str(where), str(options.allow_unverified)]
    for f in files:
        st = (where / f).stat()
        parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _cached(name: str, options: DataOptions, build: Callable[[Path, bool], tuple]) -> Dataset:
    """Load ``name`` from the compact cache, building it through torchvision once."""
    entry = next(e for e in ENTRIES if e.name == name)
    root = _root(options)
    if _locate(name)(options) is None:
        if options.data_dir:
            raise UserError(_missing_message(name, options, "files not found"))
        try:  # online: torchvision downloads into the cache root
            build(root, True)
        except UserError:
            raise
        except Exception as exc:  # network errors come in many types
            raise UserError(_missing_message(name, options, f"download failed ({exc})")) from None
    key = _source_key(name, options)
    arrays_path = cache_dir() / "arrays" / f"{name}-{key}.npz"
    meta_path = arrays_path.with_suffix(".json")
    if arrays_path.is_file() and meta_path.is_file():
        with np.load(arrays_path, allow_pickle=False) as z:
            arrays = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        info = json.loads(meta_path.read_text())
    else:
        x_train, y_train, x_test, y_test, info = build(root, False)
        arrays = [x_train, y_train, x_test, y_test]
        info = {**info, "root": str(root.resolve()), "fingerprint": fingerprint_arrays(arrays)}
        import io

        buf = io.BytesIO()
        np.savez(buf, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays)))
        atomic_write_bytes(arrays_path, buf.getvalue())
        atomic_write_text(meta_path, json.dumps(info, indent=1))
    return make_dataset(name, *arrays, num_classes=entry.num_classes, info=info)


# ---------------------------------------------------------------------------- MNIST
def _build_mnist(root: Path, download: bool):
    from torchvision.datasets import MNIST

    def split(train: bool):
        ds = MNIST(str(root), train=train, download=download)
        x = ds.data.numpy()[:, None]  # N×1×28×28 uint8
        x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=0)  # 0 -> -1
        return x, ds.targets.numpy().astype(np.int64)

    x_train, y_train = split(True)
    x_test, y_test = split(False)
    info = {"source": "torchvision.datasets.MNIST", "verified": "files present (torchvision "
            "does not checksum uncompressed MNIST)", "rule": "28x28 padded by 2 px of -1 to 32x32"}
    return x_train, y_train, x_test, y_test, info


# ---------------------------------------------------------------------------- SVHN
def _build_svhn(extra: bool):
    def build(root: Path, download: bool):
        from torchvision.datasets import SVHN

        folder = root / "SVHN"
        splits = {}
        for split in ("train", "extra", "test") if extra else ("train", "test"):
            try:
                ds = SVHN(str(folder), split=split, download=download)
            except RuntimeError as exc:
                if "corrupted" in str(exc) and (folder / f"{split}_32x32.mat").is_file():
                    raise UserError(
                        f"SVHN file {folder / f'{split}_32x32.mat'} does not match torchvision's "
                        "md5: the file is damaged or not the official one. Re-download it (delete "
                        "the file and run without --data-dir) or replace it with the official copy."
                    ) from None
                raise
            splits[split] = (ds.data, ds.labels.astype(np.int64))
        if extra:
            x_train = np.concatenate([splits["train"][0], splits["extra"][0]])
            y_train = np.concatenate([splits["train"][1], splits["extra"][1]])
        else:
            x_train, y_train = splits["train"]
        x_test, y_test = splits["test"]
        info = {"source": "torchvision.datasets.SVHN", "verified": "md5 checked by torchvision",
                "rule": "native 32x32x3; train" + ("+extra" if extra else "") + " split; digit 0 is class 0"}
        return x_train, y_train, x_test, y_test, info

    return build


# ---------------------------------------------------------------------------- CIFAR-10
def _build_cifar10(allow_unverified: bool):
    def build(root: Path, download: bool):
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import check_integrity

        folder = root / CIFAR10.base_folder
        cls = CIFAR10
        info = {"source": "torchvision.datasets.CIFAR10", "verified": "md5 checked by torchvision",
                "rule": "native 32x32x3"}
        if not download:
            official = dict(CIFAR10.train_list + CIFAR10.test_list)
            bad = {f: file_digest(folder / f, "md5") for f, md5 in official.items()
                   if not check_integrity(str(folder / f), md5)}
            if bad and not allow_unverified:
                raise UserError(
                    f"CIFAR-10 checksum mismatch in {folder}: {', '.join(sorted(bad))} differ from the "
                    "official md5s, so this is a damaged or rebuilt copy. If it is a deliberate rebuild "
                    "(e.g. a re-encoded copy), pass --allow-unverified (or REPEVAL_ALLOW_UNVERIFIED=1): "
                    "scores will be marked as coming from unverified data. Otherwise re-download it."
                )
            if bad:
                # Explicitly accept the files as they are: torchvision checks against these md5s.
                cls = type("UnverifiedCIFAR10", (CIFAR10,), {
                    "train_list": [[f, bad.get(f, m)] for f, m in CIFAR10.train_list],
                    "test_list": [[f, bad.get(f, m)] for f, m in CIFAR10.test_list],
                })
                info["verified"] = "NO: md5s differ from the official ones (--allow-unverified)"
                info["unverified_md5"] = bad

        def split(train: bool):
            ds = cls(str(root), train=train, download=download)
            return np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets, np.int64)

        x_train, y_train = split(True)
        x_test, y_test = split(False)
        return x_train, y_train, x_test, y_test, info

    return build


def _loader(name: str, build_for: Callable[[DataOptions], Callable]):
    return lambda options: _cached(name, options, build_for(options))


ENTRIES = (
    DatasetEntry("mnist", "MNIST handwritten digits, padded to 32x32", 1, 10, 60_000, 10_000,
                 depth=16, latent_dims=(256, 32, 1024),
                 loader=_loader("mnist", lambda o: _build_mnist), locate=_locate("mnist")),
    DatasetEntry("svhn", "SVHN cropped digits, train split", 3, 10, 73_257, 26_032,
                 depth=64, latent_dims=(256, 32, 1024),
                 loader=_loader("svhn", lambda o: _build_svhn(False)), locate=_locate("svhn")),
    DatasetEntry("svhn-extra", "SVHN train+extra, the paper's training stream", 3, 10, 604_388, 26_032,
                 depth=64, latent_dims=(256, 32, 1024),
                 loader=_loader("svhn-extra", lambda o: _build_svhn(True)), locate=_locate("svhn-extra")),
    DatasetEntry("cifar10", "CIFAR-10 natural images", 3, 10, 50_000, 10_000,
                 depth=64, latent_dims=(256, 1024, 32),
                 loader=_loader("cifar10", lambda o: _build_cifar10(o.allow_unverified)),
                 locate=_locate("cifar10")),
)
