"""RunSpec: validation messages, defaults, and a stable identity."""

import pytest

from repeval.errors import UserError
from repeval.specs import CPU_BUDGET, PAPER_BUDGET, RunSpec, make_spec


def test_defaults_follow_the_paper_per_dataset_and_device():
    spec = make_spec("acai", "mnist")
    assert (spec.latent_dim, spec.depth, spec.budget, spec.batch_size, spec.lr) == (256, 16, CPU_BUDGET, 64, 1e-4)
    assert spec.hparams == {"advdepth": 0, "advweight": 0.5, "reg": 0.2}
    assert make_spec("acai", "cifar10", device="cuda").budget == PAPER_BUDGET
    assert make_spec("acai", "cifar10").depth == 64
    assert make_spec("acai", "lines").latent_dim == 64
    assert make_spec("vqvae", "lines").latent_dim == 256  # the paper's VQ-VAE lines run (docs/protocol.md §3.9)


def test_online_evaluations_follow_the_position_not_the_budget():
    short, paper = make_spec("baseline", "digits", budget=4096), make_spec("baseline", "digits", budget=PAPER_BUDGET)
    assert short.online_eval_every == paper.online_eval_every == 65536  # the paper's report interval
    due = [n for n in range(64, 2 ** 18 + 1, 64) if paper.online_eval_due(n)]
    assert due == [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 196608, 262144]
    assert [n for n in range(64, 4097, 64) if short.online_eval_due(n)] == due[:3]  # and the trainer adds the end
    assert sum(paper.online_eval_due(n) for n in range(64, PAPER_BUDGET + 1, 64)) == 6 + 256


def test_illegal_latent_dim_lists_the_legal_ones():
    with pytest.raises(UserError, match="--latent-dim 100 is not a legal size for 'acai' on 'mnist': "
                                        "choose one of 32, 256, 1024"):
        make_spec("acai", "mnist", latent_dim=100)


def test_budget_and_hparam_errors():
    with pytest.raises(UserError, match="smaller than one batch"):
        make_spec("acai", "mnist", budget=10)
    with pytest.raises(UserError, match="'dropout' has no hyper-parameter\\(s\\) keep"):
        make_spec("dropout", "mnist", hparams={"keep": 0.7})
    assert make_spec("dropout", "mnist", hparams={"keep_prob": 0.75}).hparams["keep_prob"] == 0.75
    with pytest.raises(UserError, match="reference encoder"):
        make_spec("pixels", "mnist", budget=4096)


def test_reference_encoders_latent_sizes():
    assert make_spec("pixels", "cifar10").latent_dim == 3072
    assert make_spec("pca", "mnist", latent_dim=50).latent_dim == 50
    with pytest.raises(UserError, match="--latent-dim 32 does not apply to .pixels. on .mnist.: its latent is the "
                                        "example itself \\(1024 values\\)"):
        make_spec("pixels", "mnist", latent_dim=32)


def test_identity_is_stable_and_round_trips():
    spec = make_spec("vae", "digits", budget=4096, seed=3)
    assert RunSpec.from_dict(spec.to_dict()) == spec
    assert spec.digest == make_spec("vae", "digits", budget=4096, seed=3).digest
    assert spec.digest != make_spec("vae", "digits", budget=4096, seed=4).digest
    assert spec.run_id.startswith("vae-digits-256-b4096-s3-")
    assert make_spec("baseline", "npz:/data/my set.npz", budget=64).run_id.startswith("baseline-npz_data_my_set.npz-")
