"""The default thread count: the cores other processes leave free, measured from /proc/stat."""

import os
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from repeval import threads


def stat_file(path, per_cpu):
    """A /proc/stat with ``per_cpu`` = [(busy, idle) ticks] per CPU (busy as user time)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0" for i, (busy, idle) in enumerate(per_cpu)]
    path.write_text("\n".join(lines) + "\nintr 1 2 3\n")


@pytest.mark.parametrize("busy, cores, expected", [
    (0.0, 2, 2), (0.3, 2, 2), (0.6, 2, 1), (1.0, 2, 1), (2.0, 2, 1), (1.0, 8, 7), (3.4, 8, 5), (7.9, 8, 1),
])
def test_the_default_leaves_the_cores_others_use(monkeypatch, busy, cores, expected):
    monkeypatch.setattr(threads, "available_cores", lambda: list(range(cores)))
    count, why = threads.default_threads(busy)
    assert count == expected
    assert (f"using {busy:.1f}" in why) == (count < cores)


def test_unreadable_load_means_every_core(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: [0, 1, 2])
    monkeypatch.setattr(threads, "others_busy", lambda: None)
    assert threads.default_threads()[0] == 3


def test_others_busy_reads_the_ticks_of_this_process_cores(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    monkeypatch.setattr(threads, "available_cores", lambda: [0, 1])
    stat_file(stat, [(100, 100), (100, 100), (0, 0)])
    real_sleep = time.sleep

    def sleep(seconds):  # meanwhile CPU 0 was fully busy, CPU 1 idle; CPU 2 is not ours
        stat_file(stat, [(200, 100), (100, 200), (500, 0)])
        real_sleep(0)

    monkeypatch.setattr(threads.time, "sleep", sleep)
    busy = threads.others_busy(0.25, stat)
    assert 0.9 <= busy <= 1.0  # one core's worth, less this process's own (nearly nothing)


def test_a_real_spinning_process_takes_a_core():
    """Against the real /proc/stat: a process spinning on one of this process's cores is seen."""
    cores = threads.available_cores()
    if len(cores) < 2 or not os.path.exists("/proc/stat"):
        pytest.skip("needs Linux and two cores")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = threads.others_busy(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy >= 0.8  # the spinner's core (plus whatever else this machine runs)


def test_the_cli_says_when_it_uses_fewer_threads(monkeypatch, tmp_path):
    from repeval.cli import main

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: [0, 1])
    monkeypatch.setattr(threads, "others_busy", lambda: 1.0)
    before = torch.get_num_threads()
    try:
        result = CliRunner().invoke(main, ["extract", "--encoder", "pca", "--dataset", "digits", "--latent-dim", "8",
                                           "--out", str(tmp_path / "z.npz"), "--workdir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert "other processes are using 1.0 of this machine's 2 core(s): 1 thread(s) (--threads N chooses)" \
            in result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_omp_num_threads_is_honoured_without_a_measurement(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.explicit() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert threads.explicit() is None
