"""A tiny journal workload and crash checker shared by the journal tests.

A workload is a list of steps over a dozen "metadata" blocks: transactions (each one
handle writing whole blocks and maybe revoking some), forced commits and write-backs.
The model state after each transaction is known, so any recovered disk can be checked:
it must equal the state after some prefix of the transactions, at least as long as
the last transaction a returned ``force_commit`` covered.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import numpy as np

from bento_user.blockdev import RamDevice, RecordingDevice
from bento_user.ks_emul import Journal, KernelServices
from bento_user.ks_emul._recovery import recover

UUID = bytes(range(16))
AREA_START, AREA_LEN = 1, 24
HOME = list(range(100, 112))
NBLOCKS = 128
CACHE = 32

State = dict[int, "int | None"]  # block -> first-byte value; None: unknown (revoked)


@dataclass
class Txn:
    writes: dict[int, int]
    revokes: list[int] = field(default_factory=list)


Step = Txn | str  # or "force" / "writeback"


def ks_on(dev: object, cache: int = CACHE) -> KernelServices:
    return KernelServices(dev, cache_blocks=cache, commit_interval=None)  # type: ignore[arg-type]


def formatted_ram() -> RamDevice:
    ram = RamDevice(NBLOCKS)
    Journal.format(ks_on(ram).cache, AREA_START, AREA_LEN, UUID)
    return ram


def apply_txn(j: Journal, ks: KernelServices, txn: Txn) -> None:
    with j.start(len(txn.writes) + len(txn.revokes)) as h:
        for n in txn.revokes:
            h.revoke(n)
        for n, v in txn.writes.items():
            with ks.bread(n) as bh:
                h.get_write_access(bh)
                bh.data[:] = v
                h.dirty_metadata(bh)


@dataclass
class Run:
    rec: RecordingDevice
    states: list[State]          # states[k]: after k transactions
    durable: list[tuple[int, int]]  # (epochs when a force returned, transactions it covered)
    journal: Journal
    ks: KernelServices


def run(steps: list[Step]) -> Run:
    rec = RecordingDevice(formatted_ram())
    ks = ks_on(rec)
    j, _ = ks.open_journal(AREA_START, AREA_LEN, UUID)
    state: State = {n: 0 for n in HOME}
    states = [dict(state)]
    durable: list[tuple[int, int]] = []
    for step in steps:
        if isinstance(step, Txn):
            apply_txn(j, ks, step)
            for n in step.revokes:
                state[n] = None
            state.update(step.writes)
            states.append(dict(state))
        elif step == "force":
            j.force_commit()
            durable.append((rec.epochs, len(states) - 1))
        else:
            ks.cache.writeback()
    return Run(rec, states, durable, j, ks)


def home_state(dev: RamDevice) -> dict[int, int]:
    """First byte of each home block; -1 if the block is not uniform (torn or mixed)."""
    out = {}
    for n in HOME:
        b = dev.blocks[n]
        out[n] = int(b[0]) if (b == b[0]).all() else -1
    return out


def matches(home: dict[int, int], state: State) -> bool:
    return all(v is None or home[n] == v for n, v in state.items())


def recover_image(image: np.ndarray) -> RamDevice:
    dev = RamDevice.from_bytes(image)
    recover(ks_on(dev).cache, AREA_START, AREA_LEN, UUID)
    return dev


def crash_points(rec: RecordingDevice, rng: random.Random, per_epoch: int) -> list[tuple[int, list[int], dict[int, list[int]]]]:
    """(epoch, kept writes, torn writes) crash states: every subset of the in-flight
    writes when there are few, else every in-order prefix plus random subsets and tears."""
    points = []
    for epoch in range(rec.epochs + 1):
        n = len(rec.in_flight(epoch))
        if n <= 4:
            for r in range(n + 1):
                for keep in itertools.combinations(range(n), r):
                    points.append((epoch, list(keep), {}))
            continue
        for k in range(n + 1):
            points.append((epoch, list(range(k)), {}))
        for _ in range(per_epoch):
            keep = [i for i in range(n) if rng.random() < 0.5]
            torn: dict[int, list[int]] = {}
            rest = [i for i in range(n) if i not in keep]
            if rest and rng.random() < 0.5:
                torn[rng.choice(rest)] = rng.sample(range(8), rng.randint(1, 7))
            points.append((epoch, keep, torn))
    return points


def check_crashes(r: Run, rng: random.Random, per_epoch: int = 4) -> list[str]:
    """Recover every crash state; return descriptions of those that break the oracle."""
    failures = []
    for epoch, keep, torn in crash_points(r.rec, rng, per_epoch):
        must = max((covered for at, covered in r.durable if at <= epoch), default=0)
        home = home_state(recover_image(r.rec.crash_image(epoch, keep, torn)))
        if not any(matches(home, r.states[k]) for k in range(must, len(r.states))):
            failures.append(f"epoch {epoch} keep {keep} torn {torn}: home {home}, "
                            f"needs one of states {must}..{len(r.states) - 1}")
    return failures
