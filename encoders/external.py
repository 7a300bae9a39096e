"""Encoders from outside repeval: ``python:MODULE:FACTORY`` (your model) and ``latents:FILE.npz``
(your embeddings).

The encoder registry resolves both prefixes to an :class:`OutsideSource`, which names the
source and tells the command line what kind of encoder it is (not trained here, one latent
called ``embedding``). Loading (``repeval/external.py`` makes the runs):

- **python:** ``MODULE`` is an importable module (``pkg.models``) or a file
  (``path/to/file.py``, imported with its folder on ``sys.path``, as ``python file.py``
  would); ``FACTORY`` a callable in it. ``FACTORY(**hparams)`` (``--hparam`` values, after
  ``torch.manual_seed(seed)``) must return a ``torch.nn.Module`` whose ``encode(x)``, or
  else ``forward``, maps a batch of images to latents (B, D), or (B, ...) which is
  flattened. Weights (``--weights``) are loaded strictly from a safetensors file, or from a
  PyTorch file holding only tensors (``torch.load(weights_only=True)``); TorchScript and
  ``torch.export`` archives and pickled objects are refused, because loading them runs
  code. ``--strip-prefix``/``--add-prefix`` rename the file's keys.
- **Input contract.** repeval feeds (B, C, 32, 32) images in [-1, 1] with the dataset's C.
  The module may declare ``input_range = (lo, hi)``, ``input_size = S`` or ``(H, W)`` and
  ``input_channels = 1 | 3``; repeval then rescales, resizes (antialiased bilinear) and
  repeats or averages channels. A module with ``decode(z)`` (z shaped as its ``encode``
  output) returning images in the same contract gets previews and the interpolation task;
  repeval converts them back to [-1, 1] at 32×32 with the dataset's channels.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repeval.errors import UserError
from repeval.paths import file_digest

LATENT = "embedding"
LATENT_TEXT = "the encoder's output, flattened"
PYTHON_USAGE = "python:MODULE:FACTORY (with --weights FILE) for your own model"
LATENTS_USAGE = "latents:FILE.npz for precomputed embeddings (z_train, y_train, z_test, y_test)"
LIST_AT_MOST = 8  # keys listed in a mismatch message


@dataclass(frozen=True)
class OutsideSource:
    """An encoder from outside repeval, as named on the command line (``kind:location``)."""

    kind: str  # "python" or "latents"
    location: str  # the module (dotted name or .py path) or the npz path, as typed
    factory: str = ""  # python: the callable's (dotted) name in the module

    outside = True
    learned = False
    hparams = {}  # none declared: python: passes --hparam values to the factory as keyword arguments

    @property
    def latents(self) -> dict[str, str]:
        return {LATENT: LATENT_TEXT}

    @property
    def typed(self) -> str:
        return f"{self.kind}:{self.location}" + (f":{self.factory}" if self.factory else "")

    @property
    def stem(self) -> str:
        """The readable default name: the file's stem, or the module's last component."""
        if self.kind == "python" and not _is_path(self.location):
            return self.location.rpartition(".")[2]
        return Path(self.location).stem

    @property
    def summary(self) -> str:
        return "precomputed embeddings" if self.kind == "latents" else f"factory {self.factory} of {self.location}"


def python_source(rest: str) -> OutsideSource:
    """``python:REST`` → the source; REST is ``MODULE:FACTORY``."""
    module, colon, factory = rest.rpartition(":")
    if not colon or not module or not factory:
        raise UserError(f"--encoder python:{rest} needs a module and a factory separated by a colon, "
                        "python:MODULE:FACTORY, e.g. python:my_models.encoders:build or "
                        "python:path/to/file.py:build.")
    if not all(part.isidentifier() for part in factory.split(".")):
        raise UserError(f"--encoder python:{rest}: {factory!r} is not a Python name; FACTORY is the name of "
                        "the callable in the module that builds your model (e.g. build).")
    return OutsideSource("python", module, factory)


def latents_source(rest: str) -> OutsideSource:
    """``latents:REST`` → the source; REST is the path of an npz file."""
    if not rest:
        raise UserError("--encoder latents: needs a file: latents:FILE.npz (arrays z_train, y_train, z_test, "
                        "y_test, as `repeval extract` writes).")
    return OutsideSource("latents", rest)


def _is_path(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ------------------------------------------------------------------------------ the factory
def import_module(source: OutsideSource) -> tuple[Any, Path]:
    """Import ``source``'s module; returns it and its source file."""
    where = f"--encoder {source.typed}"
    if _is_path(source.location):
        path = Path(source.location).expanduser()
        if not path.is_file():
            raise UserError(f"{where}: the module file {path} does not exist. Give the path of your .py file "
                            "(relative to the current folder) or an importable module name.")
        name = f"repeval_outside_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{file_digest(path)[:12]}"
        if name in sys.modules:
            return sys.modules[name], path.resolve()
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)  # its sibling modules import, as with `python file.py`
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            del sys.modules[name]
            if not isinstance(exc, Exception):
                raise
            raise UserError(f"{where}: importing {path} failed with {_one_line(exc)}. Fix the module (run "
                            f"`python {path}` to see the full traceback).") from None
        return module, path.resolve()
    try:
        module = importlib.import_module(source.location)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's code is reported as theirs
        hint = (" Is it installed, or on PYTHONPATH? A file can be given by its path instead: "
                "python:path/to/file.py:FACTORY." if isinstance(exc, ModuleNotFoundError) else
                f" Run `python -c 'import {source.location}'` to see the full traceback.")
        raise UserError(f"{where}: importing module {source.location!r} failed with {_one_line(exc)}.{hint}") from None
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        raise UserError(f"{where}: module {source.location!r} has no source file whose sha256 could identify "
                        "the run (a namespace package?). Name the module file that defines the factory.")
    return module, Path(file).resolve()


def call_factory(source: OutsideSource, module: Any, kwargs: dict[str, Any], seed: int):
    """``FACTORY(**kwargs)`` after ``torch.manual_seed(seed)``; must give an ``nn.Module``."""
    import torch
    from torch import nn

    where = f"--encoder {source.typed}"
    obj = module
    for part in source.factory.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            raise UserError(f"{where}: {source.location} has no {source.factory!r}; the callables it defines are: "
                            f"{', '.join(names) or 'none'}. Name the function (or class) that builds your model.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"{where}: {source.factory!r} in {source.location} is a {type(obj).__name__}, not a "
                        "callable. Name the function (or class) that builds your model.")
    torch.manual_seed(seed)
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    try:
        model = obj(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: say so, with its own message
        raise UserError(f"{where}: calling {source.factory}({args}) raised {_one_line(exc)}. Fix the factory, "
                        "or the --hparam values it is given as keyword arguments.") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{where}: {source.factory}({args}) returned a {type(model).__name__}, not a "
                        "torch.nn.Module. Return the model (an nn.Module with encode(x) or forward(x)).")
    return model


# ------------------------------------------------------------------------------ weights
def load_weights(path: Path) -> tuple[dict[str, Any], str]:
    """The tensors of a weights file and its format, refusing every file whose loading runs code.

    safetensors first; then a ``torch.save`` file of tensors only, read with
    ``torch.load(weights_only=True)``. TorchScript and ``torch.export`` archives are refused
    by their layout before anything is read; pickled objects by the weights-only unpickler.
    Every file that fails to parse (empty, truncated, a damaged header, another format) is
    one :class:`UserError` naming the file, why each reader refused it, and the fix.
    """
    import pickle
    import warnings

    import torch

    where = f"--weights {path}"
    if path.is_dir():
        raise UserError(f"{where} is a folder, not a weights file. Give the path of your model's weights "
                        "(.safetensors, or a .pt state dict).")
    if not path.is_file():
        raise UserError(f"{where}: no such file. Give the path of your model's weights (.safetensors, or a "
                        ".pt state dict).")
    fix = ("Save the weights as data: safetensors.torch.save_file(model.state_dict(), 'weights.safetensors') "
           "(or torch.save(model.state_dict(), 'weights.pt')).")
    try:
        with path.open("rb") as file:
            head = file.read(9)
    except OSError as exc:
        raise UserError(f"{where} cannot be read ({_one_line(exc)}). Check the path and its permissions.") from None
    if not head:
        raise UserError(f"{where} is empty (0 bytes), not a safetensors file nor a PyTorch weights file; it was "
                        f"probably not written completely. {fix}")
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path), device="cpu")), "safetensors"
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad file: perhaps a PyTorch state dict
        as_safetensors = _reason(exc)
    # a safetensors file starts with its header's length (8 bytes) and the header, a JSON object
    looks_safetensors = len(head) == 9 and head[8:9] == b"{"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except Exception:  # noqa: BLE001 - a damaged archive: the loader below says why
            names = []
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            raise UserError(f"{where} is a TorchScript archive. Loading one runs the code inside it, so repeval "
                            f"refuses it. {fix}")
        if any(n.endswith("/archive_format") or "/models/" in n for n in names):
            raise UserError(f"{where} is a torch.export program. Loading one can unpickle and run code, so "
                            f"repeval refuses it. {fix}")
    try:
        # an open file, not the path: torch.load hands paths ending in .safetensors to safetensors again
        with path.open("rb") as file, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 150": the error below says enough
            state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is not None:
            raise UserError(f"{where} holds pickled Python objects (it refers to {found.group(1)}), not only "
                            f"tensors: loading it would run code, so the weights-only loader refuses it. "
                            f"{fix}") from None
        as_pytorch = _reason(exc)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad file, said in one paragraph
        as_pytorch = _reason(exc)
    else:
        if isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in state.items()):
            return state, "pytorch (weights_only=True)"
        if isinstance(state, dict):
            nested = [k for k, v in state.items() if isinstance(v, dict)]
            hint = (f" It looks like a training checkpoint: the weights are probably under {nested[0]!r}; save "
                    f"that dict alone (torch.save(ckpt[{nested[0]!r}], 'weights.pt'))." if nested else "")
            raise UserError(f"{where} holds a dict of {len(state)} entries that are not all named tensors (keys: "
                            f"{_listed([str(k) for k in state])}).{hint} {fix}")
        raise UserError(f"{where} holds a {type(state).__name__}, not a dict of named tensors (a state dict). {fix}")
    if looks_safetensors or path.suffix == ".safetensors":
        raise UserError(f"{where} is not a readable safetensors file ({as_safetensors}), nor a PyTorch weights "
                        f"file: it is damaged or was not written completely. {fix}")
    raise UserError(f"{where} is neither a safetensors file nor a PyTorch weights file (the PyTorch loader says "
                    f"{as_pytorch}): it is damaged, was not written completely, or holds no weights. {fix}")


def _reason(exc: BaseException) -> str:
    """Why a reader refused a weights file, short: the libraries' own messages run for lines
    (and torch's advises ``weights_only=False``, which would run the file's code)."""
    text = " ".join(str(exc).split())
    unpickler = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation of torch\.load|$)", text)
    text = unpickler.group(1) if unpickler else re.sub(r"^Error while deserializing header: ", "", text)
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LIST_AT_MOST])
    return shown + (f" and {len(names) - LIST_AT_MOST} more" if len(names) > LIST_AT_MOST else "")


def rename_keys(state: dict[str, Any], strip_prefix: str | None, add_prefix: str | None) -> dict[str, Any]:
    """``strip_prefix`` removed from the keys that start with it, then ``add_prefix`` added to all."""
    if strip_prefix:
        state = {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
    if add_prefix:
        state = {add_prefix + k: v for k, v in state.items()}
    return state


def _prefix_fix(given: set[str], expected: set[str]) -> str:
    """An --strip-prefix / --add-prefix that makes ``given`` equal ``expected``, as advice."""
    for key in sorted(given - expected)[:1]:
        parts = key.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i]) + "."
            if set(rename_keys(dict.fromkeys(given), prefix, None)) == expected:
                return f" Stripping the prefix fixes it: add --strip-prefix {prefix}"
    for key in sorted(expected - given)[:1]:
        parts = key.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i]) + "."
            if set(rename_keys(dict.fromkeys(given), None, prefix)) == expected:
                return f" Adding a prefix fixes it: add --add-prefix {prefix}"
    return ""


def load_strictly(model, state: dict[str, Any], path: Path, strip_prefix: str | None, add_prefix: str | None) -> int:
    """Copy ``state`` (renamed) into ``model``: every key and shape must match; returns the key count."""
    state = rename_keys(state, strip_prefix, add_prefix)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} [file {tuple(state[k].shape)}, model {tuple(expected[k].shape)}]"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the file ({len(missing)}): {_listed(missing)}")
        if unexpected:
            parts.append(f"in the file but not in the model ({len(unexpected)}): {_listed(unexpected)}")
        if shapes:
            parts.append(f"with other shapes ({len(shapes)}): {_listed(shapes)}")
        renamed = "".join(f" (after {o} {p})" for o, p in (("--strip-prefix", strip_prefix),
                                                          ("--add-prefix", add_prefix)) if p)
        raise UserError(f"--weights {path} does not fit the model{renamed}: keys {'; keys '.join(parts)}."
                        f"{_prefix_fix(set(state), set(expected))} The weights must be the model's own state "
                        "dict; --strip-prefix P / --add-prefix P rename the file's keys.")
    model.load_state_dict(state, strict=True)
    return len(state)


# ------------------------------------------------------------------------------ the wrapped model
@dataclass(frozen=True)
class InputContract:
    """What the user's module expects: value range, size (H, W) and channels (None: the dataset's)."""

    low: float = -1.0
    high: float = 1.0
    size: tuple[int, int] = (32, 32)
    channels: int | None = None

    def record(self) -> dict[str, Any]:
        return {"range": [self.low, self.high], "size": list(self.size), "channels": self.channels or "dataset's"}


def input_contract(model, where: str) -> InputContract:
    """The contract a module declares (``input_range``, ``input_size``, ``input_channels``)."""
    low, high = -1.0, 1.0
    raw = getattr(model, "input_range", None)
    if raw is not None:
        try:
            low, high = (float(v) for v in raw)
        except (TypeError, ValueError):
            low = high = math.nan
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise UserError(f"{where}: the model's input_range is {raw!r}; declare two finite numbers low < high, "
                            "e.g. input_range = (0.0, 1.0).")
    size: Any = getattr(model, "input_size", None)
    if size is None:
        size = (32, 32)
    elif isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise UserError(f"{where}: the model's input_size is {getattr(model, 'input_size')!r}; declare one "
                        "positive integer (square images) or (height, width).")
    channels = getattr(model, "input_channels", None)
    if channels not in (None, 1, 3):
        raise UserError(f"{where}: the model's input_channels is {channels!r}; declare 1 or 3 (or leave it out to "
                        "get the dataset's channels).")
    return InputContract(low, high, (int(size[0]), int(size[1])), channels)


def _wrapper_class():
    from torch import Tensor, nn

    class OutsideModule(nn.Module):
        """A user's module behind the encoder contract repeval's probes read (``encode``,
        ``decode``, ``check_latent``), converting images to and from its input contract and
        checking every output: a tensor, batch first, at least 2-D, the same latent shape."""

        learned = False
        latents = {LATENT: LATENT_TEXT}

        def __init__(self, inner: nn.Module, contract: InputContract, colors: int, where: str, latent_fn=None):
            super().__init__()
            self.inner, self.contract, self.colors, self.where = inner, contract, colors, where
            self.latent_fn = latent_fn
            self.latent_shape: tuple[int, ...] | None = None
            self.has_decoder = callable(getattr(inner, "decode", None))

        def check_latent(self, latent: str | None = None) -> str:
            latent = latent or LATENT
            if latent != LATENT:
                raise UserError(f"{self.where}: an outside encoder has one latent, {LATENT!r}; "
                                f"--latent {latent} does not apply to it.")
            return latent

        def default_latent(self) -> str:
            return LATENT

        def _dtype(self):
            for t in (*self.inner.parameters(), *self.inner.buffers()):
                if t.is_floating_point():
                    return t.dtype
            return None

        def to_input(self, x: Tensor) -> Tensor:
            import torch.nn.functional as F

            c = self.contract
            original = x
            if c.channels is not None and c.channels != x.shape[1]:
                x = x.mean(1, keepdim=True) if c.channels == 1 else x.expand(-1, c.channels, -1, -1)
            if tuple(x.shape[2:]) != c.size:
                x = F.interpolate(x, size=c.size, mode="bilinear", align_corners=False,
                                  antialias=c.size[0] < x.shape[2] or c.size[1] < x.shape[3])
            if (c.low, c.high) != (-1.0, 1.0):
                x = c.low + (x + 1.0) * (0.5 * (c.high - c.low))
            if x is not original:  # resizing and rescaling round: keep the values inside the declared range
                x = x.clamp(c.low, c.high)
            dtype = self._dtype()
            return x.to(dtype) if dtype is not None else x

        def _call(self, what: str, fn, arg: Tensor) -> Tensor:
            try:
                out = fn(arg)
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - the user's model failed on a valid input
                raise UserError(f"{self.where}: {what} of a batch shaped {tuple(arg.shape)} ({arg.dtype}) raised "
                                f"{_one_line(exc)}. The model gets images in [{self.contract.low:g}, "
                                f"{self.contract.high:g}] of size {self.contract.size} (declare input_range, "
                                "input_size or input_channels on the module if it expects others).") from None
            if not hasattr(out, "shape") or not hasattr(out, "flatten"):
                raise UserError(f"{self.where}: {what} returned a {type(out).__name__}, not a tensor. Return one "
                                "tensor, batch first (e.g. the latent z, not a tuple (z, extras)).")
            return out

        def encode(self, x: Tensor, latent: str | None = None) -> Tensor:
            self.check_latent(latent)
            if self.latent_fn is not None:
                fn, what = (lambda x: self.latent_fn(self.inner, x)), "latent(model, x)"
            else:
                fn = self.inner.encode if callable(getattr(self.inner, "encode", None)) else self.inner
                what = "encode(x)" if fn is not self.inner else "forward(x)"
            z = self._call(what, fn, self.to_input(x))
            if z.dim() < 2 or z.shape[0] != x.shape[0]:
                raise UserError(f"{self.where}: {what} of a batch of {x.shape[0]} images returned shape "
                                f"{tuple(z.shape)}; expected the batch first and at least one more dimension, "
                                f"({x.shape[0]}, D) or ({x.shape[0]}, ...), one latent per image.")
            if self.latent_shape is None:
                self.latent_shape = tuple(z.shape[1:])
            elif tuple(z.shape[1:]) != self.latent_shape:
                raise UserError(f"{self.where}: {what} returned latents shaped {tuple(z.shape[1:])} for one batch "
                                f"and {self.latent_shape} for another; every image needs a latent of one shape.")
            if z.is_complex():
                raise UserError(f"{self.where}: {what} returned complex latents; return real numbers.")
            return z.flatten(1).float()

        def decode(self, z: Tensor, latent: str | None = None) -> Tensor:
            import torch.nn.functional as F

            self.check_latent(latent)
            if not self.has_decoder:
                raise UserError(f"{self.where}: the model has no decode(z), so nothing can be decoded.")
            if self.latent_shape is None:
                raise RuntimeError("encode a batch before decoding (the latent shape is learnt from encode)")
            code = z.reshape(z.shape[0], *self.latent_shape)
            dtype = self._dtype()
            images = self._call("decode(z)", self.inner.decode, code.to(dtype) if dtype is not None else code)
            c = self.contract
            if images.dim() != 4 or images.shape[0] != z.shape[0] or images.shape[1] not in (1, 3):
                raise UserError(f"{self.where}: decode(z) of {z.shape[0]} latents returned shape "
                                f"{tuple(images.shape)}; expected images ({z.shape[0]}, C, H, W) with C = 1 or 3, "
                                "in the model's input contract.")
            images = images.float()
            if (c.low, c.high) != (-1.0, 1.0):
                images = (images - c.low) * (2.0 / (c.high - c.low)) - 1.0
            if tuple(images.shape[2:]) != (32, 32):
                images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False,
                                       antialias=images.shape[2] > 32 or images.shape[3] > 32)
            if images.shape[1] != self.colors:
                images = images.mean(1, keepdim=True) if self.colors == 1 else images.expand(-1, self.colors, -1, -1)
            return images

    return OutsideModule


@dataclass
class BuiltModel:
    """A user's model, wrapped, with what its provenance records."""

    module: Any  # the OutsideModule (on the CPU until moved)
    module_file: Path
    module_sha256: str
    weights: Path | None
    weights_sha256: str | None
    record: dict[str, Any]


def build(source: OutsideSource, *, colors: int, seed: int, kwargs: dict[str, Any], weights: Path | None,
          strip_prefix: str | None, add_prefix: str | None) -> BuiltModel:
    """Import, call the factory, load the weights strictly, wrap, and encode one dry batch of
    zeros (which checks the output's type, rank and batch size and sets its latent shape)."""

    where = f"--encoder {source.typed}"
    if (strip_prefix or add_prefix) and weights is None:
        raise UserError("--strip-prefix and --add-prefix rename the keys of --weights FILE; give --weights too.")
    weights_sha = file_digest(weights) if weights is not None and weights.is_file() else None
    module, module_file = import_module(source)
    inner = call_factory(source, module, kwargs, seed)
    record: dict[str, Any] = {"kind": "python", "factory": source.typed.partition(":")[2],
                              "module_file": str(module_file), "module_sha256": file_digest(module_file),
                              "class": (type(inner).__qualname__ if type(inner).__module__ == module.__name__
                                        else f"{type(inner).__module__}.{type(inner).__qualname__}"),
                              "kwargs": dict(kwargs), "weights": None}
    if weights is not None:
        state, fmt = load_weights(weights)
        keys = load_strictly(inner, state, weights, strip_prefix, add_prefix)
        record.update(weights=str(weights.resolve()), weights_sha256=weights_sha, weights_format=fmt,
                      weights_keys=keys, strip_prefix=strip_prefix, add_prefix=add_prefix)
    contract = input_contract(inner, where)
    wrapped = wrap(inner, contract, colors, where)
    record.update(input=contract.record(), latent_shape=list(wrapped.latent_shape), decoder=wrapped.has_decoder,
                  parameters=sum(p.numel() for p in inner.parameters()))
    return BuiltModel(wrapped, module_file, record["module_sha256"], weights, weights_sha, record)


def wrap(inner, contract: InputContract, colors: int, where: str, latent_fn=None):
    """``inner`` behind the encoder contract, checked on one dry batch of zeros (which checks
    the output's type, rank and batch size and sets the latent shape). ``latent_fn``: a
    callable ``(inner, x) -> z`` used instead of ``encode``/``forward``."""
    import torch

    wrapped = _wrapper_class()(inner, contract, colors, where, latent_fn=latent_fn).eval()
    with torch.no_grad():
        wrapped.encode(torch.zeros(2, colors, 32, 32))
    return wrapped


def canonical_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Factory keyword arguments in a stable order (they are part of the run's identity)."""
    return json.loads(json.dumps(dict(sorted(kwargs.items())), default=str))
