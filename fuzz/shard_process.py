"""A Dask worker's image shards run in a child process, on its main thread.

The image fuzzer stops a hanging check with SIGALRM and bounds memory with RLIMIT_AS;
both need the main thread of a process that does nothing else. A Dask worker runs
tasks on a thread of its own, next to its event loop: there an exception set into the
fuzzing thread can land inside any lock's critical section — the buffer cache's,
``logging``'s — and leave it held, which hangs the shard or the worker's own event
loop for good (seen: a campaign that never ended). So each worker keeps one child
process, started on first use, that runs image shards exactly as ``--workers 1``
does. A child that does not answer in time is killed, and its shard reported as
stuck with the command that reproduces it.

Protocol: pickled ``(job, shard)`` on the child's stdin, a pickled ``ShardResult``
on the descriptor it was given; anything the shard prints goes to /dev/null.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
from typing import IO, Any

_lock = threading.Lock()
_child: subprocess.Popen[bytes] | None = None


def run(job: Any, shard: int, deadline: float) -> Any | None:
    """``explore_shard(job, shard)`` in this worker's child process; None if it did
    not answer within ``deadline`` seconds (it is then killed)."""
    global _child
    with _lock:
        if _child is None or _child.poll() is not None:
            _child = _start()
        child = _child
        assert child.stdin is not None and child.stdout is not None
        try:
            pickle.dump((job, shard), child.stdin)
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], deadline)
            if ready:
                return pickle.load(child.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass  # it died
        child.kill()
        _end(child)
        _child = None
        return None


def stop() -> None:
    """End the child, if any (it also ends by itself when its worker does)."""
    global _child
    with _lock:
        if _child is not None:
            _end(_child)
            _child = None


def _end(child: subprocess.Popen[bytes]) -> None:
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass  # a broken pipe to a killed child
    child.wait()


def _start() -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)  # the nanny's: see campaign._malloc_like_a_plain_process
    return subprocess.Popen([sys.executable, "-m", "fuzz.shard_process"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def _serve(requests: IO[bytes], results: IO[bytes]) -> None:
    from .campaign import explore_shard

    while True:
        try:
            job, shard = pickle.load(requests)
        except EOFError:
            return  # the worker is gone
        pickle.dump(explore_shard(job, shard), results)
        results.flush()


PR_SET_PDEATHSIG = 1  # prctl(2): a signal for us when our parent (thread) ends

if __name__ == "__main__":
    # a child stuck in a shard must not outlive a worker that was killed
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    _serve(sys.stdin.buffer, out)
