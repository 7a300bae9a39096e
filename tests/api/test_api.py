"""repeval from Python: the same rows as the shell, storage and reruns, the views of Results."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from api_support import scores

import repeval
from repeval.errors import UserError

FAST = {"kmeans": {"restarts": 4}}


def test_import_repeval_is_light():
    code = ("import sys, repeval; heavy = [m for m in ('torch', 'sklearn', 'faiss', 'pandas', 'numpy') "
            "if m in sys.modules]; print(heavy); repeval.probe; print(sorted(repeval.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert "probe" in out[1] and "Prober" in out[1] and "Results" in out[1]


def test_probe_gives_the_rows_of_run_latents_file(shell, projected, tmp_path):
    z_train, y_train, z_test, y_test = projected
    path = tmp_path / "proj.npz"
    np.savez(path, z_train=z_train, y_train=y_train, z_test=z_test, y_test=y_test)
    tasks = ("linear", "knn", "kmeans")
    shell_rows = shell.json("run", "--encoder", f"latents:{path}", "--dataset", "digits", "--name", "proj",
                            *[a for t in tasks for a in ("--task", t)], "--set", "kmeans.restarts=4", "--json")
    api = repeval.probe(z_train, y_train, z_test, y_test, tasks=tasks, settings=FAST, name="proj", dataset="digits")
    assert scores(api) == scores(shell_rows) and len(api) == len(shell_rows) == 5  # kmeans: accuracy, ari, nmi
    assert all(not r["reused"] for r in api)


def test_workdir_none_writes_nothing_and_a_workdir_is_the_shells(projected, tmp_path, monkeypatch, shell):
    monkeypatch.chdir(tmp_path)
    z_train, y_train, z_test, y_test = projected
    first = repeval.probe(z_train, y_train, z_test, y_test, tasks=("linear", "knn"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written in the current folder
    work = shell.workdir
    stored = repeval.probe(z_train, y_train, z_test, y_test, tasks=("linear", "knn"), workdir=work)
    assert scores(stored) == scores(first) and not stored.reused
    assert scores(shell.json("results", "--format", "json")) == scores(stored)  # the shell sees them
    again = repeval.probe(z_train, y_train, z_test, y_test, tasks=("linear", "knn"), workdir=work)
    assert again.reused and len(again) == len(stored) and scores(again) == scores(stored)
    assert [r["created_at"] for r in again] == [r["created_at"] for r in stored]
    fresh = repeval.probe(z_train, y_train, z_test, y_test, tasks=("linear", "knn"), workdir=work, overwrite=True)
    assert not any(r["reused"] for r in fresh) and scores(fresh) == scores(stored)
    assert scores(repeval.load_results(work, task="knn")) == {k: v for k, v in scores(stored).items() if k[3] == "knn"}


def test_one_labelled_pair_is_split_stratified_and_the_split_is_in_every_row(projected):
    z, y = projected[0], projected[1]
    results = repeval.probe(z, y, tasks=("knn",), test_fraction=0.25, seed=3)
    (row,) = results
    split = row["details"]["split"]
    assert split == {"test_fraction": 0.25, "seed": 3, "n_train": len(y) - split["n_test"],
                     "n_test": int(np.ceil(0.25 * len(y))), "stratified": True}
    again = repeval.probe(z, y, tasks=("knn",), test_fraction=0.25, seed=3)
    assert again[0]["value"] == row["value"] and again[0]["run_id"] == row["run_id"]
    other = repeval.probe(z, y, tasks=("knn",), test_fraction=0.25, seed=4)
    assert other[0]["run_id"] != row["run_id"]


def test_tensors_are_accepted_like_arrays(projected):
    z_train, y_train, z_test, y_test = projected
    a = repeval.probe(z_train, y_train, z_test, y_test, tasks=("knn",))
    t = repeval.probe(torch.from_numpy(z_train), torch.from_numpy(y_train), torch.from_numpy(z_test),
                      torch.from_numpy(y_test), tasks=("knn",))
    assert scores(a) == scores(t)


TINY = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.enc = nn.Linear(32 * 32, dim)

    def encode(self, x):
        return self.enc(x.flatten(1))


def build(dim=8):
    return Tiny(dim)
"""


def test_evaluate_a_module_gives_the_rows_of_python_factory_with_weights(shell, tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "tiny_api.py").write_text(TINY)
    sys.path.insert(0, str(tmp_path))
    try:
        import tiny_api
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(5)
    trained = tiny_api.build()
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    shell_rows = shell.json("run", "--encoder", f"python:{tmp_path / 'tiny_api.py'}:build", "--weights",
                            str(tmp_path / "w.safetensors"), "--name", "tiny", "--dataset", "digits", "--task",
                            "linear", "--task", "knn", "--json")
    from_module = repeval.evaluate(trained, "digits", tasks=("linear", "knn"), name="tiny")
    with_weights = repeval.evaluate(tiny_api.build(), "digits", tasks=("linear", "knn"), name="tiny",
                                    weights=tmp_path / "w.safetensors")
    assert scores(from_module) == scores(shell_rows) == scores(with_weights)
    assert trained.training  # the caller's module keeps its mode (a copy is probed)
    changed = tiny_api.build()
    assert repeval.evaluate(changed, "digits", tasks=("knn",), name="tiny")[0]["run_id"] != from_module[0]["run_id"]


def test_a_latent_function_picks_the_latent(projected):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(32 * 32, 6)

        def forward(self, x):  # not the latent: a classifier head would sit here
            return self.body(x.flatten(1)).sum(1)

    net = Net()
    rows = repeval.evaluate(net, "digits", tasks=("knn",), latent=lambda m, x: m.body(x.flatten(1)))
    assert rows[0]["latent_dim"] == 6
    with pytest.raises(ValueError, match=r"forward\(x\) of a batch of 2 images returned shape \(2,\)"):
        repeval.evaluate(net, "digits", tasks=("knn",))


def test_evaluate_a_family_like_run(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = repeval.evaluate("pca", "digits", tasks=("linear", "kmeans"), latent_dim=8, seeds=(0, 1), settings=FAST)
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    shell_rows = shell.json("run", "--encoder", "pca", "--dataset", "digits", "--latent-dim", "8", "--seed", "0",
                            "--seed", "1", "--task", "linear", "--task", "kmeans", "--set", "kmeans.restarts=4",
                            "--json")
    assert scores(rows) == scores(shell_rows)


def test_results_views(shell, projected):
    z_train, y_train, z_test, y_test = projected
    a = repeval.probe(z_train, y_train, z_test, y_test, tasks=("knn", "kmeans"), settings=FAST, name="a",
                      workdir=shell.workdir)
    b = repeval.probe(z_train[:, :4], y_train, z_test[:, :4], y_test, tasks=("knn", "kmeans"), settings=FAST,
                      name="b", workdir=shell.workdir)
    both = a + b
    long = both.to_dataframe()
    assert len(long) == len(both) and set(long["encoder"]) == {"a", "b"}
    assert long["value"].tolist() == [r["value"] for r in both]
    wide = both.to_dataframe("wide")
    assert len(wide) == 2 and wide.set_index("encoder").loc["a", "knn/accuracy"] == a.score("knn")
    summary = both.to_dataframe("summary")
    assert set(summary["metric"]) >= {"accuracy", "nmi"} and (summary["n"] == 1).all()
    with pytest.raises(UserError, match="2 groups match knn/accuracy.*pass encoder="):
        both.score("knn")
    assert both.score("knn", encoder="b") == b.score("knn")
    html = both._repr_html_()
    assert "restarts=4" in html and "<table>" in html
    assert "reused" not in html
    stored = repeval.load_results(shell.workdir)
    assert scores(stored) == scores(both)
    diff = stored.compare("a", "b", task="knn")
    assert len(diff) == 1 and diff["difference"][0] == pytest.approx(b.score("knn") - a.score("knn"))
    shell_compare = shell("compare", "--encoder", "a", "--encoder", "b", "--task", "knn")
    assert f"{diff['difference'][0] * 100:+.2f}" in shell_compare or f"{diff['difference'][0]:+.4f}" in shell_compare
    baseline = shell.workdir / "baseline.json"
    assert stored.to_baseline(baseline) == len(stored)
    assert "PASS" in shell("check", "--baseline", str(baseline))


def test_repeat_rows_are_marked_reused_in_the_html(shell, projected):
    z_train, y_train, z_test, y_test = projected
    repeval.probe(z_train, y_train, z_test, y_test, tasks=("knn",), workdir=shell.workdir)
    again = repeval.probe(z_train, y_train, z_test, y_test, tasks=("knn",), workdir=shell.workdir)
    assert "1 reused from the store" in again._repr_html_() and "reused" in repr(again)


def test_load_results_of_an_empty_workdir_creates_nothing(tmp_path):
    assert len(repeval.load_results(tmp_path / "nothing")) == 0 and not (tmp_path / "nothing").exists()
    with pytest.raises(UserError, match="unknown filter"):
        repeval.load_results(tmp_path, colour="red")


def test_the_shell_extracts_a_python_encoder_with_weights(shell, tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "tiny_x.py").write_text(TINY)
    torch.manual_seed(1)
    state = {f"enc.{k}": v for k, v in torch.nn.Linear(1024, 8).state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    out = tmp_path / "z.npz"
    shell("extract", "--encoder", f"python:{tmp_path / 'tiny_x.py'}:build", "--weights",
          str(tmp_path / "w.safetensors"), "--dataset", "digits", "--out", str(out))
    with np.load(out) as f:
        assert f["z_train"].shape == (1257, 8) and json.loads(str(f["meta"]))["encoder"] == "w"


def test_probe_is_a_scikit_learn_estimator(projected):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score

    z, y = projected[0], projected[1]
    est = repeval.Probe("knn", random_state=0, k=5)
    assert clone(est).get_params() == est.get_params() == {"task": "knn", "random_state": 0, "device": "auto", "k": 5}
    assert est.set_params(k=7).settings == {"k": 7} and est.fit(z[:900], y[:900]) is est
    assert est.score(z[900:], y[900:]) == repeval.probe(z[:900], y[:900], z[900:], y[900:], tasks=("knn",),
                                                        settings={"knn": {"k": 7}}).score("knn")
    folds = cross_val_score(repeval.Probe("knn"), z, y, cv=3)
    assert folds.shape == (3,) and (folds > 0.5).all()
    search = GridSearchCV(repeval.Probe("knn"), {"k": [5, 20]}, cv=2).fit(z, y)
    assert search.best_params_["k"] in (5, 20)
