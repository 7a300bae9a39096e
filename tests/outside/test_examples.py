"""The README's "Evaluate your own encoder" commands, run as a user runs them, so the examples cannot rot.

Each command of the section's two code blocks runs in its own process, from a folder that
holds a copy of ``examples/`` (as a fresh clone does), with a smaller training budget and
fewer epochs. The scores then agree with scikit-learn computed independently on the same
latents: a logistic regression (C = 1) on standardised latents for the linear probe, and a
cosine kNN (k = 20, votes weighted by exp(similarity / 0.07)) for the kNN probe.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FASTER = {"--budget": "256", "--epochs": "2"}  # the README's values, made smaller for the test


def readme_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Evaluate your own encoder", 1)[1].split("\n## ", 1)[0]
    return [[line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def command(line: str) -> list[str]:
    words = shlex.split(line)
    for i, word in enumerate(words[:-1]):
        if word in FASTER:
            words[i + 1] = FASTER[word]
    if words[0] == "python" and words[1].endswith("train_tiny_conv.py"):
        words += ["--epochs", FASTER["--epochs"]]
    head = {"python": [sys.executable], "repeval": [sys.executable, "-m", "repeval"]}[words[0]]
    return head + words[1:]


def sklearn_scores(z: dict[str, np.ndarray]) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(z["z_train"])
    linear = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-10).fit(scaler.transform(z["z_train"]), z["y_train"])
    knn = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1 - d) / 0.07)).fit(z["z_train"], z["y_train"])
    return (float((linear.predict(scaler.transform(z["z_test"])) == z["y_test"]).mean()),
            float((knn.predict(z["z_test"]) == z["y_test"]).mean()))


@pytest.mark.slow
def test_readme_examples_run_end_to_end_and_agree_with_scikit_learn(tmp_path):
    blocks = readme_blocks()
    assert len(blocks) == 2 and any("latents:" in line for line in blocks[0]) \
        and any("python:" in line for line in blocks[1])
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "REPEVAL_HOME": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    for line in (line for block in blocks for line in block):
        done = subprocess.run(command(line), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    results = subprocess.run([sys.executable, "-m", "repeval", "results", "--format", "json"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, check=True)
    rows = json.loads(results.stdout)
    assert {r["encoder"] for r in rows} == {"digits_pca", "tiny_conv", "acai"}
    stored = {(r["encoder"], r["task"]): r["value"] for r in rows if r["metric"] == "accuracy"}
    latents = {"digits_pca": tmp_path / "digits_pca.npz",
               "tiny_conv": next((tmp_path / "runs" / "checkpoints").glob("tiny_conv-*/latents/*.npz"))}
    for name, path in latents.items():
        with np.load(path) as z:
            linear, knn = sklearn_scores(dict(z))
        assert abs(stored[(name, "linear")] - linear) <= 1 / 540 + 1e-9, (name, stored[(name, "linear")], linear)
        assert abs(stored[(name, "knn")] - knn) <= 1 / 540 + 1e-9, (name, stored[(name, "knn")], knn)
    html = (tmp_path / "runs" / "report.html").read_text()
    assert html.count('class="flag flag-external" href=') >= 2  # both outside encoders, in the one digits table
    assert 'alt="reconstructions of tiny_conv' in html and 'alt="reconstructions of digits_pca' not in html
