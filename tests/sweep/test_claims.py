"""Claims: O_EXCL files with host, pid and heartbeat; live claims respected, stale ones taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from repeval.paths import atomic_write_text, host_name, temp_name
from repeval.sweep import claims


def test_temp_names_carry_host_pid_and_a_random_token(tmp_path):
    a, b = temp_name(tmp_path / "state.pt"), temp_name(tmp_path / "state.pt")
    assert a != b and a.parent == tmp_path
    assert host_name() in a.name and str(os.getpid()) in a.name
    atomic_write_text(tmp_path / "x.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_a_claim_is_exclusive_and_released(tmp_path):
    run = tmp_path / "run"
    claim = claims.acquire(run)
    info = json.loads((run / claims.FILENAME).read_text())
    assert (info["host"], info["pid"]) == (host_name(), os.getpid()) and info["token"] and info["started_at"]
    with pytest.raises(claims.ClaimedElsewhere) as err:
        claims.acquire(run)
    assert err.value.exit_code == claims.CLAIMED_ELSEWHERE_EXIT and f"pid {os.getpid()}" in err.value.message
    claim.release()
    assert not (run / claims.FILENAME).exists()
    claims.acquire(run).release()


def _write_claim(run, **fields):
    run.mkdir(parents=True, exist_ok=True)
    info = {"host": host_name(), "pid": 1, "pid_start": None, "started_at": "then", "heartbeat": time.time(),
            "heartbeat_at": "now", "token": "t0ken", **fields}
    (run / claims.FILENAME).write_text(json.dumps(info))
    return info


def test_a_dead_pid_on_this_host_is_taken_over_and_logged(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    _write_claim(run, pid=dead.pid)
    logged = []
    claim = claims.acquire(run, log=logged.append)
    assert claim.info["pid"] == os.getpid()
    assert len(logged) == 1 and f"pid {dead.pid} on this host" in logged[0] and "is gone" in logged[0]
    claim.release()


def test_a_reused_pid_is_not_the_claimant(tmp_path):
    run = tmp_path / "run"
    _write_claim(run, pid=os.getpid(), pid_start="1")  # our pid, but another start time: a different process
    live, why = claims.judge(json.loads((run / claims.FILENAME).read_text()), run / claims.FILENAME)
    assert not live and "is gone" in why


def test_another_host_is_live_while_it_heartbeats_and_stale_after(tmp_path):
    run = tmp_path / "run"
    _write_claim(run, host="elsewhere", pid=os.getpid())
    with pytest.raises(claims.ClaimedElsewhere, match="host elsewhere"):
        claims.acquire(run, stale_after=60)
    _write_claim(run, host="elsewhere", heartbeat=time.time() - 120)
    logged = []
    claims.acquire(run, stale_after=60, log=logged.append).release()
    assert "no heartbeat from elsewhere for 120 s" in logged[0]


def test_heartbeat_refreshes_and_a_lost_claim_is_noticed(tmp_path):
    run = tmp_path / "run"
    claim = claims.acquire(run)
    first = claim.info["heartbeat"]
    time.sleep(0.02)
    assert claim.heartbeat() and json.loads((run / claims.FILENAME).read_text())["heartbeat"] > first
    lost = threading.Event()
    claim.start_heartbeat(every=0.05, on_lost=lambda message: lost.set())
    _write_claim(run, host="elsewhere", token="theirs")  # taken over while we looked dead
    assert lost.wait(5)
    claim.release()  # not ours any more: left alone
    assert json.loads((run / claims.FILENAME).read_text())["token"] == "theirs"


def test_only_one_of_many_concurrent_claimants_wins(tmp_path):
    run, tried = tmp_path / "run", tmp_path / "tried"
    tried.mkdir()
    # each claimant marks that it tried; the winner holds its claim until all four have
    code = ("import os, sys, time; from pathlib import Path; from repeval.sweep import claims\n"
            "tried = Path(sys.argv[2])\n"
            "try:\n    c = claims.acquire(sys.argv[1])\nexcept claims.ClaimedElsewhere:\n    c = None\n"
            "(tried / str(os.getpid())).touch()\n"
            "if c:\n    end = time.time() + 60\n"
            "    while len(list(tried.iterdir())) < 4 and time.time() < end: time.sleep(0.01)\n"
            "    c.release()\n"
            "print('won' if c else 'lost')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(run), str(tried)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert results.count("won") == 1 and results.count("lost") == 3, results
    assert not (run / claims.FILENAME).exists()


def test_a_retry_waits_for_the_attempt_it_replaces_to_let_go(tmp_path):
    run = tmp_path / "run"
    held = claims.acquire(run)
    threading.Timer(0.3, held.release).start()
    start = time.monotonic()
    claims.acquire(run, wait_s=30).release()
    assert 0.2 < time.monotonic() - start < 30
    claims.acquire(run).release()
    blocker = claims.acquire(run)
    with pytest.raises(claims.ClaimedElsewhere):
        claims.acquire(run, wait_s=0.3)
    blocker.release()
