"""Fuzz campaigns on Dask (fuzz/campaign.py): a local cluster of two worker
processes, and a real ``dask scheduler`` with two ``dask worker`` processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client

from bento_user.cli import main
from fuzz import campaign, image, shard_process
from fuzz.campaign import Job
from fuzz.target import Target

ROOT = Path(__file__).resolve().parents[2]
# bugs in classes every worker process can import (tests/fuzz/campaign_bugs.py)
MKDIR = "tests.fuzz.campaign_bugs:MkdirIgnoresMode"   # found in most shards, shrunk fast
SIZE = "tests.fuzz.campaign_bugs:SizeOffByOne"        # found in some shards only


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One local cluster for the tests that take it, which come last: its scheduler
    runs on a thread of this process and would slow a test's own Hypothesis run."""
    with campaign.cluster(workers=2) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("on_main_thread", [True, False])
@pytest.mark.parametrize("bug", ["HangsOnMount", "LosesTheAlarm"])
def test_a_hang_is_stopped_on_any_thread(on_main_thread: bool, bug: str) -> None:
    """A Dask worker runs the image fuzzer on a thread of its own, where SIGALRM cannot
    reach; the time bound must stop a hang there too, and fire nowhere else — also
    when the file system turns the bound's exception into an error of its own."""
    target = Target.load(f"tests.fuzz.campaign_bugs:{bug}")
    clean = Target.load("xv6").fresh_device(1024).image()
    outcomes: list[image.Outcome] = []

    def attempt() -> None:
        outcomes.append(image.try_image(target, clean, time_bound=0.5))
        time.sleep(0.7)  # a late alarm would land here
        outcomes.append(image.try_image(Target.load("xv6"), clean, time_bound=0.5))

    if on_main_thread:
        attempt()
    else:
        worker = threading.Thread(target=attempt)
        worker.start()
        worker.join(timeout=30)
    assert [o.kind for o in outcomes] == ["hang", "ok"], outcomes


def test_memory_is_bounded_off_the_main_thread_without_failing_other_threads() -> None:
    """On a worker's thread the memory bound must stop a greedy mount, and must not be
    an address-space limit for the whole process: that would fail the worker's own
    threads (its connection to the scheduler) while a shard runs."""
    greedy = Target.load("tests.fuzz.campaign_bugs:GreedyOnMount")
    clean = Target.load("xv6").fresh_device(1024).image()
    outcomes: list[image.Outcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(
        image.try_image(greedy, clean, time_bound=20, memory_bound=256 << 20)))
    worker.start()
    worker.join(timeout=30)
    assert [o.kind for o in outcomes] == ["memory"], outcomes

    failed: list[str] = []
    shard = threading.Thread(target=image.run, args=(Target.load("xv6"),),
                             kwargs={"images": 25, "seed": 1, "shrink": False})
    shard.start()
    while shard.is_alive():
        try:
            np.empty(image.MEMORY_BOUND + (1 << 30), np.uint8)  # address space only
        except MemoryError as e:
            failed.append(str(e))
        time.sleep(0.02)
    assert failed == []


def test_a_stuck_shard_is_reported_with_where_it_is_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blocked lock wait on a worker's thread cannot be interrupted: rather than wait
    for ever, the campaign says which shard is stuck where, and how to reproduce it."""
    monkeypatch.setattr(campaign, "STALL_FLOOR", 3.0)
    job = Job("ops", "tests.fuzz.campaign_bugs:DeadlocksOnMount", seed=1, examples=25)
    with campaign.cluster(workers=1) as one:
        with pytest.raises(campaign.FuzzError) as stuck:
            campaign.run(job, one)
    assert "shard 0 has run" in str(stuck.value) and "campaign_bugs.py" in str(stuck.value)
    assert "--seed 1 --shard 0" in str(stuck.value)


def test_an_image_shard_process_that_does_not_answer_is_killed() -> None:
    """A worker runs image shards in a child process (fuzz/shard_process.py), where
    SIGALRM works; one that hangs past the deadline anyway is killed, not waited for."""
    job = Job("image", "tests.fuzz.campaign_bugs:DeadlocksOnMount", seed=1, time_bound=0.5)
    answers: list[Any] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: answers.append(shard_process.run(job, 0, 3.0)))
    worker.start()
    worker.join(timeout=30)
    assert answers == [None] and time.monotonic() - started < 15
    assert shard_process._child is None
    try:
        healthy = shard_process.run(Job("image", "xv6", seed=1), 0, 60.0)
    finally:
        shard_process.stop()
    assert healthy is not None and healthy.count == campaign.SHARD_SIZE["image"]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is installed by setup")
def test_a_later_run_starts_from_what_an_earlier_one_saved_in_redis(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        db = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 20
        while True:
            try:
                campaign.open_database(db)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        argv = ["fuzz", "ops", "--fs", MKDIR, "--workers", "1", "--steps", "15", "--db", db]
        # a campaign's reproduce command: its shard, in this process, shrunk and saved
        assert main([*argv, "--seed", "11", "--shard", "0", "--examples", "10"]) == 1
        first = capsys.readouterr().out
        assert "its saved examples pass" in first and "shard 0 of seed 11" in first
        assert "FAILED" in first
        # another seed, one sequence: what fails is what the first run saved
        assert main([*argv, "--seed", "12", "--examples", "1"]) == 1
        second = capsys.readouterr().out
        assert "a saved example fails again" in second and "FAILED" in second
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("argv, message", [
    (["ops", "--mount", "--workers", "2"], "--mount runs in this process"),
    (["ops", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "give one of them"),
    (["image", "--db", "x"], "--db is for ops"),
    (["ops", "--db", "redis://127.0.0.1:1/0"], "--db redis://127.0.0.1:1/0:"),
    (["crash", "--shard", "-1"], "not a shard number"),
])
def test_bad_campaign_arguments_are_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    try:
        code = main(["fuzz", *argv])
        err = capsys.readouterr().err
    except SystemExit as e:                       # argparse's own errors
        code, err = int(e.code or 0), capsys.readouterr().err
    assert code == 2 and message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_a_finding_comes_back_and_one_process_finds_it_again_by_seed_and_shard(client: Any) -> None:
    job = Job("ops", SIZE, seed=11, examples=100, steps=15)  # 4 shards
    c = campaign.run(job, client)
    assert c.findings, c.status()
    found = c.findings[0]
    assert (found.problem or "").startswith("AssertionError")  # the model saw the wrong size
    assert len(c.done) < 4  # it stopped at the finding
    again = campaign.run_shard(job, found.shard, shrink=False)  # here, in this process
    assert campaign.failure_of("ops", again) == found.problem
    assert again.digest == found.digest
    assert job.command(found.shard).startswith(f"bento fuzz ops --fs {SIZE} --seed 11 --shard ")


def test_the_same_seed_explores_the_same_things_whatever_ran_where(client: Any) -> None:
    ops_job = Job("ops", "xv6", seed=5, examples=75, steps=10)  # 3 shards
    first, second = campaign.run(ops_job, client), campaign.run(ops_job, client)
    assert [r.shard for r in first.done] == [0, 1, 2] and not first.findings
    assert [r.digest for r in first.done] == [r.digest for r in second.done]
    here = campaign.run_shard(ops_job, 2, shrink=False)
    assert here.digest == first.done[2].digest
    assert len({r.digest for r in first.done}) == 3        # shards differ from each other

    image_job = Job("image", "xv6", seed=5)  # by budget: how many shards depends on timing
    a, b = campaign.run(image_job, client, budget=0.5), campaign.run(image_job, client, budget=0.5)
    common = min(len(a.done), len(b.done))
    assert common >= 2 and [r.digest for r in a.done[:common]] == [r.digest for r in b.done[:common]]


def test_a_killed_worker_costs_its_shard_not_the_campaign(client: Any) -> None:
    job = Job("ops", SIZE, seed=1, examples=100, steps=8)  # 4 shards; 0 and 1 find it
    undisturbed = campaign.run(job, client, keep_going=True)
    pids: dict[str, int] = client.run(os.getpid)
    killed: list[int] = []

    def kill_the_other(c: campaign.Campaign) -> None:
        if not killed:  # the worker still busy with its shard
            victim = next(pid for pid in pids.values() if not c.done[-1].worker.endswith(f":{pid}"))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    disturbed = campaign.run(job, client, keep_going=True, progress=kill_the_other)
    assert killed and not disturbed.lost
    assert [r.shard for r in disturbed.done] == [0, 1, 2, 3]
    assert [r.digest for r in disturbed.done] == [r.digest for r in undisturbed.done]
    assert ([r.shard for r in disturbed.findings] and
            sorted(r.shard for r in disturbed.findings) == sorted(r.shard for r in undisturbed.findings))
    client.wait_for_workers(2, timeout=60)  # the nanny started a new one


def test_a_campaign_on_a_running_dask_cluster(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dask = Path(sys.executable).with_name("dask")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                 "--no-dashboard"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            started.append(subprocess.Popen(
                [str(dask), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                 "--no-dashboard"], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as probe:
            probe.wait_for_workers(2, timeout=60)
        code = main(["fuzz", "image", "--scheduler", f"tcp://127.0.0.1:{port}", "--seed", "4",
                     "--budget", "2", "--save", str(tmp_path)])
        out = capsys.readouterr().out
        assert code == 0 and "on 2 workers" in out and "no failure" in out, out
        table = out[out.index("  worker"):].splitlines()[1:3]
        assert len({line.split()[0] for line in table}) == 2, out  # both took shards
    finally:
        for p in reversed(started):
            p.terminate()
        for p in started:
            p.wait(timeout=30)
