"""The encoder contract (``encoders/base.py``), checked for every registered family.

Parametrised over ``encoders.REGISTRY.names()`` at collection time (as timm's tests run
over ``list_models()``): a family registered by a plugin or a new module is checked without
editing this file. Family-specific meaning (the paper's losses, latent sizes, hyper-parameter
values) is tested in ``test_encoder_families.py`` and ``test_encoder_reference.py``.

Every test runs over each (family, example shape) pair the registries allow: grey and colour
images (1 or 3 × 32 × 32), 1-D signals (1 × 256 samples) and token sequences (64 positions over
5 symbols, one-hot) for the families whose ``kinds`` include them. Sizes are tiny (depth 4,
latent 32, batch 8); the latent size comes from the family's own ``resolve_latent_dim`` on a
dataset whose only legal size is 32, so reference encoders get theirs (pixels: the example's
size). Reference encoders are fitted on 8 float examples in [-1, 1]; the fitted state is
computed once per (family, shape) and loaded into each test's fresh build (a 3-colour PCA fit is a 3072×3072 float64
eigendecomposition).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from range_cases import out_of_range

import encoders
from encoders.base import Autoencoder, Step
from repeval.data.base import Example
from repeval.ranges import Range

NAMES = encoders.REGISTRY.names()
LEARNED = [name for name in NAMES if encoders.get(name).learned]
REFERENCE = [name for name in NAMES if not encoders.get(name).learned]
SHAPES = {"grey": Example("image", 1), "colour": Example("image", 3), "signal": Example("signal", 1, 256),
          "tokens": Example("tokens", 5, 64)}
DEPTH = 4
BATCH = 8
LR = 1e-3

_FITTED: dict[tuple[str, str], dict[str, torch.Tensor]] = {}


def contract_dataset(shape: str) -> SimpleNamespace:
    """A dataset entry of ``SHAPES[shape]`` whose only legal latent size is 32 (the tiniest paper map)."""
    example = SHAPES[shape]
    return SimpleNamespace(name="contract", channels=example.channels, latent_dims=(32,), default_latent_dim=32,
                           num_classes=3, features=frozenset(), example=example, kind=example.kind)


def images(shape: str, n: int = BATCH, seed: int = 0) -> torch.Tensor:
    """``n`` fixed float examples of ``SHAPES[shape]`` in [-1, 1] (token sequences: one-hot)."""
    gen = torch.Generator().manual_seed(seed)
    example = SHAPES[shape]
    if example.kind == "tokens":
        ids = torch.randint(0, example.channels, (n, example.size), generator=gen)
        return torch.nn.functional.one_hot(ids, example.channels).permute(0, 2, 1).float()
    return torch.rand(n, *example.dims, generator=gen) * 2 - 1


def build(name: str, shape: str, seed: int = 0, fit: bool = True) -> Autoencoder:
    """The family with its default hyper-parameters at a legal latent size for ``SHAPES[shape]``;
    reference encoders fitted (``fit=False``: as built, for loading a state into)."""
    family = encoders.get(name)
    example = SHAPES[shape]
    latent_dim = family.resolve_latent_dim(contract_dataset(shape), None)
    torch.manual_seed(seed)
    extra = {} if example.kind == "image" else {"example": example}
    model = family.build(example.channels, DEPTH, latent_dim, dict(family.hparams), **extra)
    if fit and not family.learned:
        key = (name, shape)
        if key not in _FITTED:
            model.fit(images(shape, seed=1))
            _FITTED[key] = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(_FITTED[key])
    return model


def cases(names: list[str]) -> list:
    """Every (name, shape) pair the registries allow (the family's ``kinds`` hold the shape's kind)."""
    return [(name, shape) for name in names for shape, example in SHAPES.items()
            if example.kind in encoders.get(name).kinds]


def fitted_cases(names: list[str]) -> list:
    """(name, shape) for tests that need a fitted model. Fitting a reference encoder on colour
    images is marked slow: PCA's fit is a 3072×3072 float64 eigendecomposition (about 10 s on
    one thread), so ``-m "not slow"`` leaves all of those out, not just the first to pay."""
    return [pytest.param(name, shape, marks=[pytest.mark.slow] if shape == "colour" and not encoders.get(name).learned
                         else []) for name, shape in cases(names)]


def same_draws(fn, *args):
    """``fn(*args)`` with the global generator reset first, so a sampling latent (the VAE's
    ``sample``) draws the same noise in two calls."""
    torch.manual_seed(1234)
    return fn(*args)


# --- declarations --------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_family_declares_its_name_summary_latents_and_hparams(name):
    family = encoders.REGISTRY[name]
    assert issubclass(family, Autoencoder)
    assert family.name == name
    assert isinstance(family.summary, str) and family.summary.strip()
    assert isinstance(family.learned, bool)
    assert isinstance(family.latents, dict) and family.latents
    assert all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in family.latents.items())
    assert family.default_latent() == next(iter(family.latents))
    assert isinstance(family.hparams, dict) and all(isinstance(k, str) for k in family.hparams)


@pytest.mark.parametrize("name", NAMES + encoders.REGISTRY.composed_names())
def test_every_hparam_declares_a_range_its_default_fits_and_bad_values_are_refused(name):
    """Each hyper-parameter states the values it accepts (``hparam_ranges``, repeval/ranges.py);
    ``repeval run --hparam`` checks them once, where they enter (``make_spec``)."""
    from repeval.errors import UserError
    from repeval.ranges import check_hparam

    family = encoders.get(name)
    ranges = family.hparam_ranges
    assert set(ranges) == set(family.hparams), f"{name}: ranges for {sorted(ranges)}, hparams {sorted(family.hparams)}"
    for hparam, default in family.hparams.items():
        declared = ranges[hparam]
        assert isinstance(declared, Range), (name, hparam)
        assert declared.convert(default) == default, f"{name}: the default {hparam}={default!r} is out of its range"
        assert check_hparam(family, hparam, str(default)) == default  # as typed on the command line
        for bad in out_of_range(declared):
            with pytest.raises(UserError, match=f"--hparam {hparam}=.* for {re.escape(name)} is not allowed: "
                                                f"{hparam} must be {re.escape(declared.describe())}"):
                check_hparam(family, hparam, bad)


@pytest.mark.parametrize("name, shape", cases(NAMES))
def test_build_with_default_hparams(name, shape):
    model = build(name, shape, fit=False)
    assert isinstance(model, encoders.get(name))
    assert model.arch.example_shape == SHAPES[shape].dims
    assert model.hp == encoders.get(name).hparams
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        encoders.get(name).build(SHAPES[shape].channels, DEPTH, model.arch.latent_dim, {"no_such_hparam": 1})


@pytest.mark.parametrize("name, shape", fitted_cases(REFERENCE))
def test_reference_encoder_fits_float_images(name, shape):
    """``fit`` takes float images in [-1, 1] once, returns nothing and leaves a usable encoder
    (the fitted state is kept for the other tests of this file)."""
    model = build(name, shape, fit=False)
    assert model.fit(images(shape, seed=1)) is None
    _FITTED[(name, shape)] = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        z = model.eval().encode(images(shape))
    assert z.shape == (BATCH, model.latent_dim()) and torch.isfinite(z).all()


# --- encode / decode ----------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", fitted_cases(NAMES))
def test_encode_and_decode_every_latent(name, shape):
    model = build(name, shape).eval()
    x = images(shape)
    with torch.no_grad():
        for latent in model.latents:
            dim = model.latent_dim(latent)
            assert isinstance(dim, int) and dim > 0
            z = model.encode(x, latent)
            assert z.shape == (BATCH, dim) and z.dtype == torch.float32, latent
            assert torch.isfinite(z).all(), latent
            out = model.decode(z, latent)
            assert out.shape == (BATCH, *SHAPES[shape].dims) and out.is_floating_point(), latent
        default = model.default_latent()
        assert model.latent_dim() == model.latent_dim(default)
        assert same_draws(model.encode, x).shape == (BATCH, model.latent_dim(default))
        assert torch.equal(same_draws(model.encode, x), same_draws(model.encode, x, default))
        assert model.decode(model.encode(x)).shape == (BATCH, *SHAPES[shape].dims)
        features = model.features(x)
        assert features.shape == (BATCH, model.feature_dim) and features.is_floating_point()


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_latent_is_rejected(name):
    model = build(name, "grey").eval()
    x = images("grey")
    assert model.check_latent(None) == model.default_latent()
    for latent in model.latents:
        assert model.check_latent(latent) == latent
    with pytest.raises(ValueError, match="no latent"):
        model.check_latent("nonsense")
    with pytest.raises(ValueError, match="no latent"):
        model.encode(x, "nonsense")
    with torch.no_grad():
        z = model.encode(x)
    with pytest.raises(ValueError, match="no latent"):
        model.decode(z, "nonsense")


@pytest.mark.parametrize("name, shape", cases(NAMES))
def test_parameter_counts_are_non_negative_ints_with_encoder_and_decoder(name, shape):
    counts = build(name, shape, fit=False).parameter_counts()
    assert isinstance(counts, dict)
    assert {"encoder", "decoder"} <= set(counts)
    for part, n in counts.items():
        assert isinstance(part, str) and type(n) is int and n >= 0, (part, n)


# --- training (learned families) ----------------------------------------------------------

@pytest.mark.parametrize("name, shape", cases(LEARNED))
def test_training_step_gives_one_finite_loss_per_optimiser_group(name, shape):
    model = build(name, shape).train()
    x = images(shape)
    groups = model.optimizer_groups(LR)
    assert isinstance(groups, dict) and groups
    seen: set[int] = set()
    for group, (params, lr) in groups.items():
        params = list(params)
        assert params and all(isinstance(p, torch.nn.Parameter) for p in params), group
        assert isinstance(lr, float) and lr > 0, (group, lr)
        ids = {id(p) for p in params}
        assert not ids & seen, f"{group} shares parameters with another group"
        seen |= ids
    assert seen == {id(p) for p in model.parameters() if p.requires_grad}, "a parameter is in no group"

    step = model.training_step(x)
    assert isinstance(step, Step)
    assert set(step.losses) == set(groups)
    for group, loss in step.losses.items():
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.is_floating_point(), group
        assert torch.isfinite(loss), group
        assert loss.requires_grad, group
    assert step.features.shape == (BATCH, model.feature_dim)
    assert step.features.is_floating_point()
    assert not step.features.requires_grad and step.features.grad_fn is None  # detached
    for key, value in step.logs.items():
        assert isinstance(value, torch.Tensor) and value.numel() == 1 and torch.isfinite(value), key

    for group, (params, _) in groups.items():
        params = list(params)
        grads = torch.autograd.grad(step.losses[group], params, retain_graph=True, allow_unused=True)
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), \
            f"loss {group!r} gives no gradient to any parameter of its own group"


@pytest.mark.parametrize("name, shape", [c for c in cases(LEARNED) if c[1] != "colour"])
def test_training_step_under_bf16_autocast_keeps_losses_in_float32(name, shape):
    model = build(name, shape).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        step = model.training_step(images(shape))
    for loss in step.losses.values():
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert step.features.dtype == torch.float32 and not step.features.requires_grad
    assert step.features.shape == (BATCH, model.feature_dim)
    assert all(torch.isfinite(v) for v in step.logs.values())
    assert set(step.losses) == set(model.optimizer_groups(1e-4))


# --- state --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", fitted_cases(NAMES))
def test_state_dict_round_trips_into_a_fresh_build(name, shape, tmp_path):
    model = build(name, shape, seed=0)
    x = images(shape)
    if model.learned:
        model.train()
        model.training_step(x)  # buffers that training moves (the VQ-VAE's EMA codebook) move
    torch.save(model.state_dict(), tmp_path / "state.pt")
    fresh = build(name, shape, seed=1, fit=False)
    state = model.state_dict()
    if state:  # not vacuous: the fresh build differs until it loads the state
        assert any(not torch.equal(t, fresh.state_dict()[k]) for k, t in state.items())
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert fresh.state_dict().keys() == state.keys()
    assert all(torch.equal(t, fresh.state_dict()[k]) for k, t in state.items())
    model.eval(), fresh.eval()
    with torch.no_grad():
        for latent in model.latents:
            z, z_fresh = same_draws(model.encode, x, latent), same_draws(fresh.encode, x, latent)
            assert torch.equal(z, z_fresh), latent
            assert torch.equal(same_draws(model.decode, z, latent), same_draws(fresh.decode, z_fresh, latent)), latent


def test_every_registered_family_is_checked():
    """The parametrisation above is the registry itself (a hand-written list would drift)."""
    assert NAMES and NAMES == encoders.REGISTRY.names()
    assert LEARNED == [name for name in encoders.REGISTRY.names() if encoders.get(name).learned]
