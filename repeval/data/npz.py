"""``npz:PATH``: a user's own arrays ``x_train, y_train, x_test, y_test``.

Images are uint8, shaped N×H×W (grey) or N×H×W×C with C in {1, 3}. Rule to 32×32
(recorded in provenance): when H and W are both ≤ 32 the image is centred and padded with
0 (= −1 after scaling, as MNIST); otherwise it is resized to 32×32 with antialiased
bilinear interpolation (aspect ratio not kept). Labels are non-negative integers (−1, the
usual mark of an unlabelled image, is refused rather than taken for a class); at least two
classes must appear in ``y_train`` and every class of ``y_test`` must appear there too. They
are mapped to 0…K−1 in sorted order of the train classes (recorded). Arrays are read
without pickle (``allow_pickle=False``): an array of Python objects is refused, never loaded.

1-D signals are declared by the file: an array ``kind`` holding the string ``"signal"``
(``np.savez(PATH, kind="signal", x_train=..., ...)``). Their ``x`` arrays are N×L (one channel)
or N×C×L, floats (kept as they are; they must be finite) or integers (scaled to [-1, 1] by
their type's range: ``uint8`` as pixels, ``x·2/255 − 1``; signed types divided by their
maximum, e.g. 32,767 for ``int16`` audio). The learned families pool a signal down to 16
latent positions by halving, so its length must be 16 times a power of two (a reference
encoder, ``pixels`` or ``pca``, takes any length).

Token sequences are declared the same way, with their vocabulary:
``np.savez(PATH, kind="tokens", symbols=np.array(["_", "a", "b", ...]), x_train=..., ...)``.
Their ``x`` arrays are integer token ids N×L, each in ``0 … len(symbols) − 1`` (the id is the
index of its symbol; ``symbols`` are distinct, non-empty strings, used to show decoded text).
Optionally ``pad`` names the id of a padding symbol and ``length`` the declared sequence length:
shorter sequences are padded on the right with ``pad`` up to ``length``, longer ones are refused,
and a sequence of padding only (an empty string) is refused. The families read the one-hot
sequence (``V`` channels over ``L`` positions, pooled to 16 latent positions, so ``L`` must be 16
times a power of two) and decode a softmax over the symbols at each position.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from repeval.data.base import IMAGE_SIZE, KINDS, Dataset, Example, make_dataset
from repeval.data.registry import DatasetEntry
from repeval.errors import UserError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _signal(x: np.ndarray, path: Path, key: str) -> tuple[np.ndarray, str]:
    """A declared signal array as float32 N×C×L, and the rule that made it."""
    shape = x.shape
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[2] < 2:
        raise UserError(f"{path}: array {key!r} has shape {shape}; a signal file (kind='signal') holds N×L "
                        "(one channel) or N×C×L arrays with N > 0 and L >= 2 samples.")
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
            raise UserError(f"{path}: array {key!r} holds NaN or infinite values in {bad:,} of its {len(x):,} "
                            "signals. Drop or repair those signals (np.isfinite(x).all(axis=-1)).")
        return x.astype(np.float32), "float samples kept as they are"
    if x.dtype == np.uint8:
        return (x.astype(np.float32) * (2 / 255) - 1), "uint8 samples scaled to [-1, 1] as x*2/255 - 1"
    if np.issubdtype(x.dtype, np.signedinteger):
        top = np.iinfo(x.dtype).max
        return (x.astype(np.float32) / top), f"{x.dtype} samples divided by {top}"
    raise UserError(f"{path}: array {key!r} has dtype {x.dtype}; a signal's samples are floats or integers "
                    "(uint8 or signed). Convert it, e.g. x.astype(np.float32).")


def _scalar(z, name: str, path: Path) -> int | None:
    """The optional integer scalar array ``name`` of a token file."""
    if name not in z.files:
        return None
    try:
        value = z[name]
    except ValueError:
        value = None
    if value is None or value.ndim != 0 or not np.issubdtype(value.dtype, np.integer):
        raise UserError(f"{path}: array {name!r} must be one integer (np.savez(PATH, {name}=64, ...)).")
    return int(value)


def _vocabulary(z, path: Path) -> tuple[tuple[str, ...], int | None, int | None]:
    """A token file's ``symbols``, ``pad`` id and declared ``length``."""
    how = "np.savez(PATH, kind='tokens', symbols=np.array(['_', 'a', 'b', ...]), ...)"
    if "symbols" not in z.files:
        raise UserError(f"{path}: a token file (kind='tokens') names its vocabulary in an array 'symbols', one "
                        f"string per token id: {how}.")
    try:
        symbols = z["symbols"]
    except ValueError:
        symbols = np.array([object()])
    if symbols.ndim != 1 or symbols.dtype.kind != "U" or len(symbols) < 2:
        raise UserError(f"{path}: array 'symbols' has shape {symbols.shape} and dtype {symbols.dtype}; it must be "
                        f"a 1-D array of at least two strings, one per token id: {how}.")
    names = tuple(str(s) for s in symbols)
    repeated = sorted({s for s in names if names.count(s) > 1})
    if repeated or "" in names:
        raise UserError(f"{path}: array 'symbols' does not name each token id once: "
                        + (f"{', '.join(map(repr, repeated))} appear(s) more than once" if repeated
                           else "it holds an empty string") + ". Give one distinct, non-empty string per id.")
    pad = _scalar(z, "pad", path)
    if pad is not None and not 0 <= pad < len(names):
        raise UserError(f"{path}: pad = {pad} is not a token id of the {len(names)} symbols (0..{len(names) - 1}).")
    return names, pad, _scalar(z, "length", path)


def _tokens(x: np.ndarray, path: Path, key: str, symbols: tuple[str, ...], pad: int | None,
            length: int | None) -> tuple[np.ndarray, str]:
    """Declared token ids N×L as one-hot ``bool`` N×V×L', padded to the declared length."""
    if x.ndim != 2 or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.integer):
        raise UserError(f"{path}: array {key!r} has shape {x.shape} and dtype {x.dtype}; a token file "
                        "(kind='tokens') holds integer token ids N×L with N > 0.")
    vocab = len(symbols)
    outside = (x < 0) | (x >= vocab)
    if outside.any():
        rows = np.flatnonzero(outside.any(axis=1))
        raise UserError(f"{path}: array {key!r} holds token ids outside the vocabulary of {vocab} symbols "
                        f"(0..{vocab - 1}): {int(x[outside][0])} first, in {len(rows):,} of {len(x):,} sequences "
                        f"(first at row {int(rows[0]):,}). Add the missing symbols to 'symbols' or fix the ids.")
    rule = f"token ids over {vocab} symbols, one-hot"
    if length is not None:
        if x.shape[1] > length:
            raise UserError(f"{path}: array {key!r} holds sequences of {x.shape[1]} tokens, longer than the declared "
                            f"length = {length}. Raise 'length' or shorten the sequences.")
        if x.shape[1] < length:
            if pad is None:
                raise UserError(f"{path}: array {key!r} holds sequences of {x.shape[1]} tokens, shorter than the "
                                f"declared length = {length}, and the file names no 'pad' id to fill them with.")
            x = np.pad(x, ((0, 0), (0, length - x.shape[1])), constant_values=pad)
            rule += f", padded with {symbols[pad]!r} to {length}"
    if pad is not None:
        empty = np.flatnonzero((x == pad).all(axis=1))
        if len(empty):
            raise UserError(f"{path}: array {key!r} holds {len(empty):,} empty sequences (padding only), first at row "
                            f"{int(empty[0]):,}. Leave them out: they have nothing to encode.")
    one_hot = np.zeros((x.shape[0], vocab, x.shape[1]), dtype=bool)
    np.put_along_axis(one_hot, x[:, None, :].astype(np.int64), True, axis=1)
    return one_hot, rule


def _kind(z, path: Path) -> str:
    """The file's declared kind of example: ``"image"`` unless an array ``kind`` says otherwise."""
    if "kind" not in z.files:
        return "image"
    try:
        kind = str(z["kind"])
    except ValueError:
        kind = "?"
    if kind not in KINDS:
        raise UserError(f"{path}: array 'kind' holds {kind!r}; it declares what the examples are: "
                        f"{', '.join(map(repr, KINDS))} (np.savez(PATH, kind='signal', ...)).")
    return kind


def _to_nchw32(x: np.ndarray, path: Path, key: str) -> tuple[np.ndarray, str]:
    if x.dtype != np.uint8:
        raise UserError(f"{path}: array {key!r} has dtype {x.dtype}, expected uint8 pixels 0-255. "
                        "Convert it with (x * 255).round().astype(np.uint8) if it holds floats in [0, 1]; "
                        "if it holds 1-D signals, declare them: np.savez(PATH, kind='signal', ...).")
    shape = x.shape
    if x.ndim == 3:
        x = x[:, :, :, None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] == 0:
        raise UserError(f"{path}: array {key!r} has shape {shape}, expected N×H×W or N×H×W×C with "
                        "C = 1 or 3 and N > 0 (channels last); 1-D signals (N×L or N×C×L) are declared with "
                        "np.savez(PATH, kind='signal', ...).")
    x = x.transpose(0, 3, 1, 2)
    h, w = x.shape[2:]
    if h <= IMAGE_SIZE and w <= IMAGE_SIZE:
        top, left = (IMAGE_SIZE - h) // 2, (IMAGE_SIZE - w) // 2
        pad = ((0, 0), (0, 0), (top, IMAGE_SIZE - h - top), (left, IMAGE_SIZE - w - left))
        return np.pad(x, pad, constant_values=0), f"{h}x{w} centred and padded with 0 (-1 after scaling) to 32x32"
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(x).float(), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                      antialias=True, align_corners=False)
    return t.round().clamp_(0, 255).to(torch.uint8).numpy(), f"{h}x{w} resized to 32x32 (antialiased bilinear)"


def load_npz(path: Path) -> Dataset:
    if not path.is_file():
        raise UserError(f"npz dataset {path} does not exist. Give npz:PATH to a file made with "
                        "np.savez(PATH, x_train=..., y_train=..., x_test=..., y_test=...).")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable .npz file ({exc}). Write it with np.savez.") from None
    if not hasattr(z, "files"):
        raise UserError(f"{path} holds a single array (.npy format), not named arrays. Write it with "
                        "np.savez(PATH, x_train=..., y_train=..., x_test=..., y_test=...).")
    with z:
        missing = [k for k in KEYS if k not in z.files]
        if missing:
            raise UserError(f"{path} lacks array(s) {', '.join(missing)}; it holds {', '.join(z.files) or 'nothing'}. "
                            f"An npz dataset needs {', '.join(KEYS)}.")
        arrays = {}
        for k in KEYS:
            try:
                arrays[k] = z[k]
            except ValueError:  # numpy refuses object arrays under allow_pickle=False
                raise UserError(f"{path}: array {k!r} holds Python objects (dtype object), which repeval never "
                                "unpickles: loading them could run code. Save plain numbers, e.g. "
                                "np.asarray(x, dtype=np.uint8) and np.asarray(y, dtype=np.int64).") from None
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise UserError(f"{path}: array {k!r} cannot be read ({exc}); the file is truncated or damaged. "
                                "Write it again with np.savez.") from None
        kind = _kind(z, path)
        symbols, pad, length = _vocabulary(z, path) if kind == "tokens" else (None, None, None)
    if kind == "tokens":
        def convert(x, path, key):
            return _tokens(x, path, key, symbols, pad, length)
    else:
        convert = _to_nchw32 if kind == "image" else _signal
    x_train, rule = convert(arrays["x_train"], path, "x_train")
    x_test, _ = convert(arrays["x_test"], path, "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        what = {"image": "image shape or channels", "signal": "signal length or channels",
                "tokens": "sequence length"}[kind]
        raise UserError(f"{path}: x_train and x_test differ in {what} "
                        f"({arrays['x_train'].shape[1:]} vs {arrays['x_test'].shape[1:]}).")
    labels = {}
    for k, n in (("y_train", len(x_train)), ("y_test", len(x_test))):
        y = arrays[k]
        if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{path}: array {k!r} has shape {y.shape} and dtype {y.dtype}, expected "
                            f"{n} integer labels (one per example of x_{k[2:]}).")
        if len(y) and y.min() < 0:
            negative = np.flatnonzero(y < 0)
            raise UserError(f"{path}: {k} holds negative labels ({int(y[negative[0]])} at {len(negative):,} of "
                            f"{len(y):,} rows, first at row {int(negative[0]):,}); labels must be class numbers "
                            ">= 0. A negative label usually marks an unlabelled image: leave those images out, or "
                            "map the labels to 0..C-1 with np.unique(y, return_inverse=True)[1].")
        labels[k] = y
    classes = np.unique(labels["y_train"])
    if len(classes) < 2:
        raise UserError(f"{path}: every label in y_train is {int(classes[0])}: the probes need at least two classes "
                        "(a single class makes every clustering and classification trivially perfect). Give "
                        "labels of two or more classes.")
    unseen = np.setdiff1d(np.unique(labels["y_test"]), classes)
    if len(unseen):
        shown = ", ".join(map(str, unseen[:8].tolist())) + (", ..." if len(unseen) > 8 else "")
        raise UserError(f"{path}: y_test holds the class(es) {shown}, which no image of y_train has; every test "
                        "class must appear in the train split (a probe fitted on train cannot predict it). "
                        "Move some of those images to the train split, or leave them out.")
    info = {"source": str(path.resolve()), "verified": "user-supplied file",
            "rule": rule + "; labels mapped to 0..K-1 in sorted order",
            "classes": [int(c) for c in classes]}
    if pad is not None:
        info["pad"] = pad  # the padding symbol's id, which text previews drop at the end of a string
    return make_dataset(f"npz:{path}", x_train, np.searchsorted(classes, labels["y_train"]),
                        x_test, np.searchsorted(classes, labels["y_test"]), num_classes=len(classes), info=info,
                        symbols=symbols)


def _example(path: Path) -> Example:
    """What ``x_train`` holds, read from the npy header (and the small ``kind`` array) alone:
    images of 1 or 3 channels, signals or token sequences; a grey image when unreadable
    (``load_npz`` then reports the problem)."""
    try:
        with zipfile.ZipFile(path) as zf:
            with zf.open("x_train.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape = read_header(f)[0]
            kind, symbols, length = "image", 0, None
            if "kind.npy" in zf.namelist():
                with zf.open("kind.npy") as f:
                    kind = str(np.load(f, allow_pickle=False))
            if kind == "tokens" and "symbols.npy" in zf.namelist():
                with zf.open("symbols.npy") as f:
                    symbols = len(np.load(f, allow_pickle=False))
            if kind == "tokens" and "length.npy" in zf.namelist():
                with zf.open("length.npy") as f:
                    length = int(np.load(f, allow_pickle=False))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return Example()
    if kind == "tokens" and len(shape) == 2:
        return Example("tokens", max(int(symbols), 1), max(length or 0, int(shape[1])))
    if kind == "signal" and len(shape) in (2, 3):
        return Example("signal", int(shape[1]) if len(shape) == 3 else 1, int(shape[-1]))
    return Example("image", int(shape[-1]) if len(shape) == 4 else 1)


def npz_entry(path_str: str) -> DatasetEntry:
    path = Path(path_str).expanduser()
    example = _example(path) if path.is_file() else Example()
    return DatasetEntry(
        f"npz:{path_str}", f"your arrays in {path}", example.channels, 0, 0, 0,
        depth=16 if example.channels == 1 or example.kind != "image" else 64,
        latent_dims=(256, 32, 1024) if example.kind == "image" else (256, 32, 64, 1024),
        loader=lambda options: load_npz(path),
        locate=lambda options: str(path) if path.is_file() else None,
        kind=example.kind, size=example.size,
    )
