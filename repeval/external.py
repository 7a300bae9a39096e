"""Runs of encoders from outside repeval: ``latents:FILE.npz`` and ``python:MODULE:FACTORY``.

Such an encoder is not trained here, yet it becomes an ordinary run: a
:class:`~repeval.specs.RunSpec` whose ``source`` holds the identity of the user's files
(sha256 of the npz; of the module file and the weights for ``python:``, with the factory's
name, keyword arguments and key renames), so a changed file is a different run directory,
while ``encoder`` is the readable name tables show (``--name``, else the file's stem). The
run directory (``spec.json``, ``provenance.json`` with the paths, shapes, formats and an
``external`` record; cached latents) is written only once everything was checked: a bad
file or model stops with one paragraph and nothing stored. Scores are then stored, listed,
reported and gated by ``repeval check`` like any other.

Everything is validated where it enters (:func:`read_latents`, :func:`make_spec`,
:func:`prepare`); the model side (import, factory, weights, input contract) is
:mod:`encoders.external`.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.specs import RunSpec

KEYS = ("z_train", "y_train", "z_test", "y_test")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class OutsideOptions:
    """The command line's options for outside encoders (``repeval run``)."""

    weights: Path | None = None
    name: str | None = None
    strip_prefix: str | None = None
    add_prefix: str | None = None


def source(name: str):
    """The :class:`encoders.external.OutsideSource` of an encoder name, or None for a family."""
    import encoders

    found = encoders.get(name)
    return found if getattr(found, "outside", False) else None


def is_outside(name: str) -> bool:
    return source(name) is not None


def is_embeddings(name: str) -> bool:
    """Whether ``name`` is a ``latents:`` file (precomputed embeddings, no model)."""
    found = source(name)
    return found is not None and found.kind == "latents"


def check_options(names: list[str], options: OutsideOptions) -> None:
    """The outside-encoder options fit the encoders named (one python: encoder per --weights, ...)."""
    outside = [n for n in names if is_outside(n)]
    python = [n for n in outside if source(n).kind == "python"]
    if options.weights is not None and len(python) != 1:
        raise UserError(f"--weights loads the weights of one python: encoder; this command names "
                        f"{len(python) or 'no'} python: encoder{'s' if len(python) != 1 else ''}. Run one "
                        "`repeval run --encoder python:MODULE:FACTORY --weights FILE` per model.")
    if (options.strip_prefix or options.add_prefix) and options.weights is None:
        raise UserError("--strip-prefix and --add-prefix rename the keys of --weights FILE; give --weights too.")
    if options.name is not None and len(outside) != 1:
        raise UserError(f"--name names one encoder from outside repeval (latents: or python:); this command "
                        f"names {len(outside) or 'none'}. Built-in families keep their own names.")


def display_name(src, options: OutsideOptions) -> str:
    """The name tables show: ``--name``, else the weights' stem (python:), else the file's stem."""
    import encoders

    if options.name is not None:
        name, what = options.name, f"--name {options.name}"
    elif src.kind == "python" and options.weights is not None:
        name, what = Path(options.weights).stem, f"the weights file's stem {Path(options.weights).stem!r}"
    else:
        name, what = src.stem, f"the file's stem {src.stem!r}"
    if not NAME.fullmatch(name or "") or len(name) > 64:
        raise UserError(f"{what} is not a usable encoder name: use letters, digits, '.', '_' and '-' (at most 64, "
                        "starting with a letter or digit). Choose one with --name NAME.")
    if name in encoders.REGISTRY:
        raise UserError(f"{what} is the name of the registered family {name!r}; an outside encoder needs its own "
                        "name in tables and the report. Choose one with --name NAME.")
    return name


# ------------------------------------------------------------------------------ latents: files
@dataclass
class LatentsFile:
    """A validated embeddings file: float32 (N, D) latents, int64 labels, its meta and record."""

    path: Path
    sha256: str
    z_train: Any
    y_train: Any
    z_test: Any
    y_test: Any
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str | None:
        """The dataset named in ``meta`` (``dataset``, or ``spec.dataset`` as `repeval extract` writes)."""
        spec = self.meta.get("spec") if isinstance(self.meta.get("spec"), dict) else {}
        name = self.meta.get("dataset") or spec.get("dataset")
        return str(name) if name else None


def _non_finite(z, split: str, unit: str) -> str | None:
    """One sentence naming how many values of ``z`` are NaN or infinite and where, or None."""
    import numpy as np

    bad = ~np.isfinite(z)
    if not bad.any():
        return None
    rows = np.flatnonzero(bad.any(axis=1))
    first_row = int(rows[0])
    first_col = int(np.flatnonzero(bad[first_row])[0])
    nan, inf = int(np.isnan(z).sum()), int(np.isinf(z).sum())
    return (f"the {split} latents hold {nan:,} NaN and {inf:,} infinite values in {len(rows):,} of {len(z):,} "
            f"{unit}s (first at {unit} {first_row:,}, dimension {first_col:,})")


_READ: dict[tuple[str, str], LatentsFile] = {}  # (path, sha256) -> the file as read and checked in this process


def read_latents(path: Path) -> LatentsFile:
    """Read and check an embeddings npz (``allow_pickle=False``): every problem is a UserError.
    The same file with the same contents (sha256) is checked once per process."""
    from repeval.paths import file_digest

    key = (str(path.resolve()), file_digest(path)) if path.is_file() else None
    if key is not None and key in _READ:
        return _READ[key]
    loaded = _read_latents(path, key[1] if key else "")
    if key is not None:
        _READ[key] = loaded
    return loaded


def _read_latents(path: Path, sha: str) -> LatentsFile:
    import numpy as np

    where = f"--encoder latents:{path}"
    if not path.is_file():
        raise UserError(f"{where}: no such file. Give an .npz with z_train, y_train, z_test, y_test (e.g. written "
                        "by `repeval extract --out FILE.npz`, or by np.savez).")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{where} is not a readable .npz file ({exc}). Write it with np.savez(FILE, z_train=..., "
                        "y_train=..., z_test=..., y_test=...).") from None
    if not hasattr(loaded, "files"):
        raise UserError(f"{where} holds a single array (.npy), not named arrays. Write it with np.savez(FILE, "
                        "z_train=..., y_train=..., z_test=..., y_test=...).")
    with loaded:
        missing = [k for k in KEYS if k not in loaded.files]
        if missing:
            hint = (" It holds images (x_train): probe them with a family and --dataset npz:FILE instead."
                    if "x_train" in loaded.files else "")
            raise UserError(f"{where} lacks the array(s) {', '.join(missing)}; it holds "
                            f"{', '.join(loaded.files) or 'nothing'}. An embeddings file needs {', '.join(KEYS)}."
                            f"{hint}")
        arrays = {}
        for key in (*KEYS, *(("meta",) if "meta" in loaded.files else ())):
            try:
                arrays[key] = loaded[key]
            except ValueError:
                raise UserError(f"{where}: array {key!r} holds Python objects (dtype object), which repeval never "
                                "unpickles. Save plain numbers, e.g. np.asarray(z, dtype=np.float32).") from None
    out, classes = check_arrays(arrays, where)
    shapes = {k: list(arrays[k].shape) for k in KEYS}
    dtypes = {k: str(arrays[k].dtype) for k in KEYS}
    meta: dict[str, Any] = {}
    if "meta" in arrays:
        raw = arrays["meta"]
        try:
            meta = json.loads(str(raw.item()) if raw.ndim == 0 else "")
        except (ValueError, TypeError):
            meta = None
        if not isinstance(meta, dict):
            raise UserError(f"{where}: array 'meta' must be one JSON object as text, e.g. "
                            "meta=np.array(json.dumps({'dataset': 'mnist', 'encoder': 'mine'})); it holds "
                            f"{raw.dtype} {raw.shape}.")
    record = {"kind": "latents", "file": str(path.resolve()), "sha256": sha, "shapes": shapes, "dtypes": dtypes,
              "classes": int(len(classes)), "meta": meta}
    return LatentsFile(path, sha, out["z_train"], out["y_train"], out["z_test"], out["y_test"],
                       int(len(classes)), meta, record)


def check_arrays(arrays: dict[str, Any], where: str) -> tuple[dict[str, Any], Any]:
    """Check and convert latents and labels of both splits (``z_train``, ``y_train``,
    ``z_test``, ``y_test``): float32 (N, D) latents (more dimensions are flattened), int64
    labels, finite values, one label per row, the classes 0..C-1. Returns the converted
    arrays and the sorted classes; every problem is a :class:`UserError` that starts with
    ``where`` (the file, or the Python call the arrays came from)."""
    import numpy as np

    out: dict[str, Any] = {}
    for split in ("train", "test"):
        z, y = arrays[f"z_{split}"], arrays[f"y_{split}"]
        if not hasattr(z, "dtype") or not hasattr(y, "dtype"):
            raise UserError(f"{where}: z_{split} and y_{split} must be arrays (NumPy or torch), got "
                            f"{type(z).__name__} and {type(y).__name__}. Convert them with np.asarray(...).")
        if z.dtype.kind not in "fiu":
            raise UserError(f"{where}: z_{split} has dtype {z.dtype}; latents must be real numbers (float or "
                            "integer). Convert them with np.asarray(z, dtype=np.float32).")
        if z.ndim < 2 or 0 in z.shape:
            raise UserError(f"{where}: z_{split} has shape {z.shape}; expected (N, D), one row per image with N > 0 "
                            "(or (N, ...), which is flattened).")
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise UserError(f"{where}: y_{split} has shape {y.shape} and dtype {y.dtype}; expected one integer class "
                            "label per row, e.g. y.astype(np.int64).")
        if len(y) != len(z):
            raise UserError(f"{where}: z_{split} has {len(z):,} rows but y_{split} has {len(y):,} labels; there must "
                            "be one label per latent.")
        with np.errstate(over="ignore"):  # values beyond float32's range become inf, reported below
            z32 = np.ascontiguousarray(z.reshape(len(z), -1), dtype=np.float32)
        problem = _non_finite(z32, split, "row")
        if problem:
            raise UserError(f"{where}: {problem} (after conversion to float32). Every latent must be finite: "
                            "check the encoder that produced them.")
        out[f"z_{split}"], out[f"y_{split}"] = z32, y.astype(np.int64)
    if arrays["z_train"].shape[1:] != arrays["z_test"].shape[1:]:
        raise UserError(f"{where}: train latents are shaped {arrays['z_train'].shape[1:]} per row but test latents "
                        f"{arrays['z_test'].shape[1:]}; both splits must come from the same encoder and latent.")
    classes = np.unique(np.concatenate([out["y_train"], out["y_test"]]))
    if len(classes) < 2:
        raise UserError(f"{where}: every label is {int(classes[0])}; probes need at least two classes.")
    if classes[0] < 0 or classes[-1] >= len(classes):
        raise UserError(f"{where}: labels must be the class numbers 0..C-1 (C = {len(classes)} distinct labels "
                        f"here), but they run from {int(classes[0])} to {int(classes[-1])}. Map them, e.g. "
                        "np.unique(y, return_inverse=True)[1].")
    return out, classes


def meta_dataset(name: str) -> str | None:
    """The dataset a ``latents:`` file's meta names (None otherwise, or for other encoders)."""
    src = source(name)
    if src is None or src.kind != "latents":
        return None
    return read_latents(Path(src.location).expanduser()).dataset


# ------------------------------------------------------------------------------ specs
@dataclass
class _Resolved:
    """What :func:`make_spec` loaded, kept for :func:`prepare` in this process."""

    record: dict[str, Any]
    latents_file: LatentsFile | None = None
    built: Any = None  # encoders.external.BuiltModel
    where: str = ""  # how messages name the source, when it is no file (Python objects)


_RESOLVED: dict[str, _Resolved] = {}


def make_spec(name: str, dataset: str, *, seed: int = 0, options: OutsideOptions = OutsideOptions(),
              hparams: dict[str, Any] | None = None, latent_dim: int | None = None) -> RunSpec:
    """The RunSpec of an outside encoder ``name`` (``latents:...`` or ``python:...``) on ``dataset``.

    Reads and checks the files now (the model is built and run on a dry batch), so every
    problem shows before anything runs; what was loaded is kept for :func:`prepare`.
    """
    from encoders import external as ext

    src = source(name)
    if src is None:
        raise ValueError(f"{name!r} is not an outside encoder")
    if seed < 0:
        raise UserError(f"--seed {seed} must be a non-negative integer.")
    hparams = dict(hparams or {})
    shown = display_name(src, options)
    if src.kind == "latents":
        if hparams:
            raise UserError(f"--hparam {', '.join(sorted(hparams))} does not apply to {name}: precomputed embeddings "
                            "have no hyper-parameters.")
        if options.weights is not None:
            raise UserError(f"--weights does not apply to {name}: precomputed embeddings need no model.")
        loaded = read_latents(Path(src.location).expanduser())
        dim, identity = loaded.z_train.shape[1], {"kind": "latents", "sha256": loaded.sha256}
        resolved = _Resolved(loaded.record, latents_file=loaded)
    else:
        from repeval import data

        entry = data.get(dataset)
        images_only(entry, name)
        weights = Path(options.weights).expanduser() if options.weights is not None else None
        kwargs = ext.canonical_kwargs(hparams)
        built = ext.build(src, colors=entry.channels, seed=seed, kwargs=kwargs, weights=weights,
                          strip_prefix=options.strip_prefix, add_prefix=options.add_prefix)
        dim = math.prod(built.module.latent_shape)
        identity = {"kind": "python", "factory": src.factory, "module_sha256": built.module_sha256,
                    "weights_sha256": built.weights_sha256, "strip_prefix": options.strip_prefix,
                    "add_prefix": options.add_prefix}
        hparams = kwargs
        resolved = _Resolved(built.record, built=built)
    if latent_dim is not None and latent_dim != dim:
        raise UserError(f"--latent-dim {latent_dim} does not apply to {name}: its latents have {dim} values. "
                        "Leave --latent-dim out.")
    spec = RunSpec(encoder=shown, dataset=dataset, latent_dim=int(dim), depth=0, budget=0, seed=int(seed),
                   online_eval_every=0, hparams=hparams, source=identity)
    _RESOLVED[spec.run_id] = resolved
    return spec


# ------------------------------------------------------------------------------ runs
@dataclass
class Outside:
    """An outside encoder ready to probe: its run directory, model (python: only) and latents."""

    checkpoint: Any  # repeval.checkpoint.Checkpoint, or None when nothing is written (no workdir)
    model: Any  # the wrapped module on the device, or None for latents:
    latents: Any  # repeval.latents.Latents
    no_decoder: str | None  # why previews and decoder tasks are skipped; None when it decodes
    latent: str = "embedding"
    provenance: dict[str, Any] = field(default_factory=dict)


def _check_labels(loaded: LatentsFile, dataset, where: str) -> None:
    """Known dataset: the file's labels must be the dataset's, in the same order."""
    import numpy as np

    for split in ("train", "test"):
        mine = getattr(loaded, f"y_{split}")
        theirs = getattr(dataset, split).y.cpu().numpy()
        if len(mine) != len(theirs):
            raise UserError(f"{where}: the file has {len(mine):,} {split} rows, but the {split} split of "
                            f"{dataset.name!r} has {len(theirs):,} images. Embeddings of {dataset.name!r} need one "
                            "row per image, in the dataset's order; to group them under a name of your own, give "
                            "--dataset NAME with a name that is not a registered dataset.")
        differ = np.flatnonzero(mine != theirs)
        if len(differ):
            i = int(differ[0])
            raise UserError(f"{where}: y_{split} differs from the {split} labels of {dataset.name!r} at "
                            f"{len(differ):,} of {len(mine):,} positions (first at row {i:,}: {int(mine[i])} in the "
                            f"file, {int(theirs[i])} in the dataset). The rows must follow the dataset's order "
                            "(`repeval extract` writes them so); to group the scores under a name of your own, give "
                            "--dataset NAME with a name that is not a registered dataset.")


def _finite_latents(z, split: str, where: str) -> None:
    problem = _non_finite(z, split, "image")
    if problem:
        raise UserError(f"{where}: {problem}. Every latent must be finite: check the model's weights and its input "
                        "range (repeval feeds images in [-1, 1] unless the module declares input_range).")


def prepare(spec: RunSpec, dataset, device: str, workdir: Path | None) -> Outside:
    """Check an outside encoder against the data, then write its run directory; see the module
    docstring. ``dataset`` is the loaded dataset (``None`` for embeddings grouped under a name
    that is no registered dataset). With ``workdir=None`` nothing is written (arrays and
    modules probed from Python): no run directory, no cached latents."""

    from repeval import extract as ex
    from repeval import provenance
    from repeval.checkpoint import Checkpoint, run_dir, weights_digest
    from repeval.latents import Latents
    from repeval.paths import atomic_write_text

    resolved = _RESOLVED.get(spec.run_id)
    if resolved is None:
        raise UserError(f"Run {spec.run_id} is an encoder from outside repeval; it is probed from its files: "
                        "`repeval run --encoder latents:FILE` or `--encoder python:MODULE:FACTORY`.")
    path = run_dir(workdir, spec) if workdir is not None else None
    cache: tuple[Path, Latents, dict[str, Any]] | None = None
    model = None
    if resolved.latents_file is not None:
        loaded = resolved.latents_file
        where = resolved.where or f"--encoder latents:{loaded.path}"
        if dataset is not None:
            _check_labels(loaded, dataset, where)
        num_classes = dataset.num_classes if dataset is not None else loaded.num_classes
        latents = Latents(loaded.z_train, loaded.y_train, loaded.z_test, loaded.y_test, num_classes)
        no_decoder = "precomputed embeddings have no decoder"
        checked = (f"labels equal to the registered dataset {dataset.name!r}'s" if dataset is not None else
                   f"labels not checked ({spec.dataset!r} is no registered dataset)")
        data_record = {"name": spec.dataset, "source": str(loaded.path.resolve()) if loaded.path else "arrays",
                       "fingerprint": loaded.sha256[:16], "verified": f"user-supplied embeddings; {checked}"}
    else:
        built = resolved.built
        where = built.module.where
        model = built.module.to(device).eval()
        latent = "embedding"
        digest = weights_digest(model.state_dict())
        file = path / "latents" / f"{latent}-{digest}-{dataset.fingerprint}.npz" if path is not None else None
        cached = ex.read_cache(file, dataset.num_classes) if file is not None and file.is_file() else None
        if cached is not None:
            latents = cached
        else:
            z_train = ex.encode(model, dataset.train.x, latent, device)
            _finite_latents(z_train, "train", where)
            z_test = ex.encode(model, dataset.test.x, latent, device)
            _finite_latents(z_test, "test", where)
            latents = Latents(z_train, dataset.train.y.cpu().numpy(), z_test, dataset.test.y.cpu().numpy(),
                              dataset.num_classes)
            if file is not None:
                cache = (file, latents, {"latent": latent, "weights": digest, "data": dataset.fingerprint})
        no_decoder = None if model.has_decoder else "the model has no decode(z)"
        if model.has_decoder:
            import torch

            from repeval.data.base import to_float

            with torch.no_grad():  # a decode that fails is the user's error: find it before storing anything
                model.decode(model.encode(to_float(dataset.test.x[:2].to(device))))
        data_record = None
    record = provenance.collect(device, dataset)
    if data_record is not None:
        record["data"] = data_record
    record.update(precision="fp32", training_step="none (an encoder from outside repeval)",
                  latents={"embedding": "the encoder's output, flattened"},
                  external={**resolved.record, "trained_by": "external", "decoder": no_decoder is None})
    if path is None:
        return Outside(None, model, latents, no_decoder, provenance=record)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "spec.json", json.dumps(spec.to_dict(), indent=1, sort_keys=True))
    atomic_write_text(path / "provenance.json", json.dumps(record, indent=1, sort_keys=True, default=str))
    if cache is not None:
        ex.write_npz(*cache)
    return Outside(Checkpoint(path), model, latents, no_decoder, provenance=record)


# ------------------------------------------------------------------------------ sources held in memory
def _object_name(name: str, what: str) -> str:
    """A usable table name for a source given from Python (``name=``)."""
    import encoders

    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > 64:
        raise UserError(f"name={name!r} ({what}) is not a usable encoder name: use letters, digits, '.', '_' and '-' "
                        "(at most 64, starting with a letter or digit).")
    if name in encoders.REGISTRY:
        raise UserError(f"name={name!r} is the name of the registered family {name!r}; {what} needs its own name in "
                        "tables and the report. Pass name='something_else'.")
    return name


def _array_digest(arrays: dict[str, Any], extra: dict[str, Any]) -> str:
    import hashlib

    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for key in KEYS:
        a = arrays[key]
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _as_numpy(value: Any, what: str, where: str):
    """NumPy view of an array or a torch tensor (detached, on the CPU); anything else as is."""
    if value is None:
        return None
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "__array__") and not hasattr(value, "dtype"):
        import numpy as np

        return np.asarray(value)
    if not hasattr(value, "dtype"):
        if isinstance(value, (list, tuple)):
            import numpy as np

            try:
                return np.asarray(value)
            except ValueError as exc:
                raise UserError(f"{where}: {what} is a ragged {type(value).__name__} ({exc}); give an array of "
                                "one row per example.") from None
        raise UserError(f"{where}: {what} is a {type(value).__name__}; give a NumPy array or a torch tensor.")
    return value


TEST_FRACTION = 0.2  # repeval.probe's held-out share when no test split is given


def split_labelled(z, y, *, fraction: float, seed: int, where: str):
    """A seeded, stratified train/test split of one labelled pair (scikit-learn's
    ``train_test_split``); returns the four arrays and what was done (recorded in every row)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise UserError(f"{where}: test_fraction={fraction!r} must be a number strictly between 0 and 1 (the share "
                        "of examples held out for testing), e.g. 0.2.")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) and counts.min() < 2:
        rare = classes[counts < 2][:8].tolist()
        raise UserError(f"{where}: class(es) {', '.join(map(str, rare))} have a single example, so a stratified "
                        "train/test split cannot put one on each side. Give z_test and y_test yourself, or drop "
                        "those examples.")
    n_test = int(np.ceil(fraction * len(y)))
    if n_test < len(classes) or len(y) - n_test < len(classes):
        raise UserError(f"{where}: {len(y):,} examples of {len(classes)} classes cannot be split {fraction:g} / "
                        f"{1 - fraction:g} with every class on both sides. Give more examples, another test_fraction, "
                        "or z_test and y_test yourself.")
    z_train, z_test, y_train, y_test = train_test_split(z, y, test_size=fraction, random_state=seed, stratify=y)
    record = {"test_fraction": float(fraction), "seed": int(seed), "n_train": int(len(y_train)),
              "n_test": int(len(y_test)), "stratified": True}
    return z_train, y_train, z_test, y_test, record


class ArraysSource:
    """Latents held in memory (``repeval.probe``): checked as a ``latents:`` file is, named
    by the digest of their bytes (and of the split made when no test split was given)."""

    embeddings = True
    in_memory = True

    def __init__(self, z_train, y_train, z_test=None, y_test=None, *, name: str = "arrays",
                 test_fraction: float = TEST_FRACTION, split_seed: int = 0, where: str = "repeval.probe"):
        where = f"{where}(name={name!r})"
        self.name = _object_name(name, "a set of arrays")
        z_train, y_train = _as_numpy(z_train, "z_train", where), _as_numpy(y_train, "y_train", where)
        z_test, y_test = _as_numpy(z_test, "z_test", where), _as_numpy(y_test, "y_test", where)
        self.split: dict[str, Any] | None = None
        if z_test is None and y_test is None:
            if z_train is None or y_train is None:
                raise UserError(f"{where}: give the latents and their labels, z_train and y_train.")
            ArraysSource.check_split(z_train, y_train, where=where)  # names a bad array before any split
            z_train, y_train, z_test, y_test, self.split = split_labelled(z_train, y_train, fraction=test_fraction,
                                                                          seed=split_seed, where=where)
        if any(a is None for a in (z_train, y_train, z_test, y_test)):
            raise UserError(f"{where}: give z_test together with y_test (or neither, and a stratified split of "
                            "z_train, y_train is made).")
        arrays = {"z_train": z_train, "y_train": y_train, "z_test": z_test, "y_test": y_test}
        converted, classes = check_arrays(arrays, where)
        self.where = where
        self.sha256 = _array_digest(converted, {"split": self.split})
        shapes = {k: list(arrays[k].shape) for k in KEYS}
        dtypes = {k: str(arrays[k].dtype) for k in KEYS}
        record = {"kind": "arrays", "sha256": self.sha256, "shapes": shapes, "dtypes": dtypes,
                  "classes": int(len(classes)), "split": self.split}
        self.loaded = LatentsFile(None, self.sha256, converted["z_train"], converted["y_train"], converted["z_test"],
                                  converted["y_test"], int(len(classes)), {}, record)

    @staticmethod
    def check_split(z, y, *, where: str) -> None:
        """Check one split's latents and labels as a ``latents:`` file's are checked."""
        z, y = _as_numpy(z, "X", where), _as_numpy(y, "y", where)
        check_arrays({"z_train": z, "y_train": y, "z_test": z, "y_test": y}, where)

    @staticmethod
    def gather(data, max_examples: int | None, seed: int, split: str, where: str):
        """``(x, y)`` of one split for :class:`repeval.Prober`: a pair of arrays or tensors (a
        seeded draw of ``max_examples`` when there are more), or an iterable of ``(x, y)``
        batches (a DataLoader: its first ``max_examples`` examples). ``x`` stays a tensor or
        array of inputs; ``y`` becomes int64 labels."""
        import numpy as np
        import torch

        if max_examples is not None and (isinstance(max_examples, bool) or not isinstance(max_examples, int)
                                         or max_examples < 2):
            raise UserError(f"{where}: max_examples={max_examples!r} must be a whole number of at least 2, or None.")
        if isinstance(data, (tuple, list)) and len(data) == 2 and all(hasattr(a, "shape") for a in data):
            x, y = data
            if len(x) != len(y):
                raise UserError(f"{where}: the {split} inputs have {len(x):,} rows but {len(y):,} labels; give one "
                                "label per example.")
            if max_examples is not None and len(x) > max_examples:
                keep = np.sort(np.random.default_rng(seed).choice(len(x), max_examples, replace=False))
                x = x[torch.as_tensor(keep)] if isinstance(x, torch.Tensor) else x[keep]
                y = y[torch.as_tensor(keep)] if isinstance(y, torch.Tensor) else y[keep]
        else:
            try:
                batches = iter(data)
            except TypeError:
                raise UserError(f"{where}: {split} is a {type(data).__name__}; give (x, y) tensors or arrays, or a "
                                "DataLoader of (x, y) batches.") from None
            xs, ys, n = [], [], 0
            for batch in batches:
                if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                    raise UserError(f"{where}: a {split} batch is a {type(batch).__name__}; each batch must be "
                                    "(x, y) (inputs and integer labels).")
                xs.append(torch.as_tensor(batch[0]))
                ys.append(torch.as_tensor(batch[1]))
                n += len(xs[-1])
                if max_examples is not None and n >= max_examples:
                    break
            if not xs:
                raise UserError(f"{where}: the {split} data gave no batch.")
            x, y = torch.cat(xs)[:max_examples], torch.cat(ys)[:max_examples]
        y = _as_numpy(y, f"the {split} labels", where)
        if getattr(y, "dtype", None) is None or y.dtype.kind not in "iu" or y.ndim != 1:
            raise UserError(f"{where}: the {split} labels have shape {getattr(y, 'shape', None)} and dtype "
                            f"{getattr(y, 'dtype', None)}; give one integer class label per example.")
        return x, y.astype(np.int64)

    def make_spec(self, dataset: str, *, seed: int = 0, latent_dim: int | None = None,
                  hparams: dict[str, Any] | None = None) -> RunSpec:
        if hparams:
            raise UserError(f"{self.where}: hyper-parameters {', '.join(sorted(hparams))} do not apply to "
                            "precomputed latents.")
        dim = int(self.loaded.z_train.shape[1])
        if latent_dim is not None and latent_dim != dim:
            raise UserError(f"{self.where}: latent_dim={latent_dim} does not apply: the latents have {dim} values.")
        identity = {"kind": "arrays", "sha256": self.sha256, **({"split": self.split} if self.split else {})}
        spec = RunSpec(encoder=self.name, dataset=dataset, latent_dim=dim, depth=0, budget=0, seed=int(seed),
                       online_eval_every=0, hparams={}, source=identity)
        _RESOLVED[spec.run_id] = _Resolved(self.loaded.record, latents_file=self.loaded, where=self.where)
        return spec


class ModuleSource:
    """A ``torch.nn.Module`` held in memory (``repeval.evaluate(model, ...)``), behind the same
    input contract as ``python:`` encoders, named by the digest of its class and state dict
    (so a changed model is a new run). ``latent``: an optional callable ``(model, x) -> z``
    for a model whose latent is not ``encode(x)`` (nor ``forward``)."""

    embeddings = False
    in_memory = True

    def __init__(self, module, *, name: str | None = None, latent=None, weights: Path | None = None,
                 strip_prefix: str | None = None, add_prefix: str | None = None):
        import copy

        from torch import nn

        if not isinstance(module, nn.Module):
            raise UserError(f"repeval.evaluate: encoder is a {type(module).__name__}; give a registered name "
                            "(`repeval encoders`), latents:FILE.npz, python:MODULE:FACTORY or a torch.nn.Module.")
        if latent is not None and not callable(latent):
            raise UserError(f"repeval.evaluate: latent={latent!r} does not apply to a module; give a callable "
                            "(model, x) -> latents, or leave it out to use the module's encode(x) (else forward).")
        cls = type(module)
        self.where = f"repeval.evaluate({cls.__name__})"
        self.name = _object_name(name or cls.__name__, f"the module {cls.__name__}")
        self.inner = copy.deepcopy(module)  # the caller's module keeps its device, mode and weights
        self.latent_fn = latent
        self.record: dict[str, Any] = {}
        if weights is not None:
            from encoders import external as ext
            from repeval.paths import file_digest

            weights = Path(weights).expanduser()
            state, fmt = ext.load_weights(weights)
            keys = ext.load_strictly(self.inner, state, weights, strip_prefix, add_prefix)
            self.record.update(weights=str(weights.resolve()), weights_sha256=file_digest(weights),
                               weights_format=fmt, weights_keys=keys)
        elif strip_prefix or add_prefix:
            raise UserError("strip_prefix and add_prefix rename the keys of weights=FILE; give weights too.")
        self.inner.cpu()

    def _identity(self) -> dict[str, Any]:
        from repeval.checkpoint import weights_digest

        cls = type(self.inner)
        fn = self.latent_fn
        latent_fn = None
        if fn is not None:
            import hashlib
            import inspect

            try:
                code = inspect.getsource(fn)
            except (OSError, TypeError):
                code = getattr(getattr(fn, "__code__", None), "co_code", b"").hex()
            latent_fn = {"name": getattr(fn, "__qualname__", type(fn).__name__),
                         "sha256": hashlib.sha256(code.encode()).hexdigest()}
        return {"kind": "module", "class": f"{cls.__module__}.{cls.__qualname__}",
                "state_sha256": weights_digest(self.inner.state_dict()), "latent_fn": latent_fn}

    def make_spec(self, dataset: str, *, seed: int = 0, latent_dim: int | None = None,
                  hparams: dict[str, Any] | None = None) -> RunSpec:
        from encoders import external as ext
        from repeval import data

        if hparams:
            raise UserError(f"{self.where}: hyper-parameters {', '.join(sorted(hparams))} do not apply to a module "
                            "that is already built.")
        entry = data.get(dataset)
        images_only(entry, self.where)
        contract = ext.input_contract(self.inner, self.where)
        wrapped = ext.wrap(self.inner, contract, entry.channels, self.where, latent_fn=self.latent_fn)
        dim = math.prod(wrapped.latent_shape)
        if latent_dim is not None and latent_dim != dim:
            raise UserError(f"{self.where}: latent_dim={latent_dim} does not apply: the module's latents have {dim} "
                            "values. Leave latent_dim out.")
        identity = self._identity()
        record = {**identity, **self.record, "input": contract.record(), "latent_shape": list(wrapped.latent_shape),
                  "decoder": wrapped.has_decoder, "parameters": sum(p.numel() for p in self.inner.parameters())}
        built = ext.BuiltModel(wrapped, Path(), "", None, None, record)
        spec = RunSpec(encoder=self.name, dataset=dataset, latent_dim=int(dim), depth=0, budget=0, seed=int(seed),
                       online_eval_every=0, hparams={}, source={k: v for k, v in identity.items() if v is not None})
        _RESOLVED[spec.run_id] = _Resolved(record, built=built, where=self.where)
        return spec


def images_only(entry, where: str) -> None:
    """A model from outside repeval is fed images (B, C, 32, 32) by its input contract
    (:mod:`encoders.external`); on a dataset of another kind, a UserError saying what works."""
    if entry.kind != "image":
        raise UserError(f"{where} is a model from outside repeval, which repeval feeds images (B, C, 32, 32); "
                        f"{entry.name!r} holds {entry.example.describe()}. On such data use a repeval family "
                        "(`repeval encoders --dataset NAME` lists them) or your embeddings as latents:FILE.npz.")
