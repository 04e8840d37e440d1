"""Locks: owner tracking, rw-semaphore fairness, and lockdep's inversion checks."""

from __future__ import annotations

import threading
import time

import pytest

from bento_user.ks_emul import (
    KernelServices,
    Lockdep,
    LockError,
    LockOrderError,
    Mutex,
    RWSemaphore,
    Semaphore,
)
from bento_user.blockdev import RamDevice


def in_thread(fn) -> BaseException | None:  # type: ignore[no-untyped-def]
    """Run fn in another thread; return what it raised."""
    box: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return box[0] if box else None


def test_mutex_tracks_its_owner() -> None:
    m = Mutex("inode")
    m.acquire()
    assert m.held_by_me() and m.statistics().owners == (threading.get_ident(),)
    with pytest.raises(LockError, match="self-deadlock"):
        m.acquire()
    assert isinstance(in_thread(m.release), LockError)
    m.release()
    assert not m.locked() and m.statistics().acquisitions == 1
    with pytest.raises(LockError, match="does not hold"):
        m.release()


def test_semaphore_counts_and_tracks_holders() -> None:
    s = Semaphore(2, "slots")
    s.acquire()
    s.acquire()
    assert s.statistics().owners == (threading.get_ident(),)
    got = threading.Event()

    def third() -> None:
        s.acquire()
        got.set()
        s.release()

    t = threading.Thread(target=third)
    t.start()
    assert not got.wait(0.1)
    s.release()
    t.join(5)
    assert got.is_set()
    s.release()


def test_rwsem_readers_share_and_a_waiting_writer_goes_first() -> None:
    rw = RWSemaphore("gate")
    rw.acquire_read()
    assert in_thread(lambda: (rw.acquire_read(), rw.release_read())) is None  # shared
    writer_in = threading.Event()

    def writer() -> None:
        rw.acquire_write()
        writer_in.set()
        time.sleep(0.05)
        rw.release_write()

    w = threading.Thread(target=writer)
    w.start()
    while rw._writers_waiting == 0:
        time.sleep(0.001)
    late_reader_got_in_before_writer: list[bool] = []

    def late_reader() -> None:
        rw.acquire_read()
        late_reader_got_in_before_writer.append(not writer_in.is_set())
        rw.release_read()

    r = threading.Thread(target=late_reader)
    r.start()
    time.sleep(0.05)
    assert late_reader_got_in_before_writer == []  # queued behind the writer
    rw.release_read()
    w.join(5)
    r.join(5)
    assert late_reader_got_in_before_writer == [False]


def test_rwsem_write_gives_up_after_its_timeout() -> None:
    rw = RWSemaphore("gate")
    rw.acquire_read()
    result: list[bool] = []
    in_thread(lambda: result.append(rw.acquire_write(timeout=0.05)))
    assert result == [False]
    rw.release_read()
    assert rw.acquire_write(timeout=1)
    rw.release_write()


def test_lockdep_catches_an_ab_ba_inversion() -> None:
    dep = Lockdep()
    a, b = Mutex("A", dep), Mutex("B", dep)
    with a:
        with b:
            pass
    with b:
        with pytest.raises(LockOrderError, match="taking A while holding B"):
            a.acquire()
    assert not a.locked()  # the check runs before the lock is taken


def test_lockdep_catches_a_longer_cycle_across_threads() -> None:
    dep = Lockdep()
    a, b, c = Mutex("A", dep), Mutex("B", dep), Mutex("C", dep)

    def ab() -> None:
        with a, b:
            pass

    def bc() -> None:
        with b, c:
            pass

    assert in_thread(ab) is None and in_thread(bc) is None
    with c:
        with pytest.raises(LockOrderError, match="A -> B -> C"):
            a.acquire()


def test_lockdep_tells_nesting_subclasses_apart() -> None:
    dep = Lockdep()
    parent1, parent2 = Mutex("inode", dep), Mutex("inode", dep)
    parent1.acquire()
    parent2.acquire(subclass=1)  # rename: the second inode lock, in a fixed order
    parent2.release()
    parent1.release()
    other = Mutex("alloc", dep)
    with other:
        parent1.acquire()  # alloc -> inode
        parent1.release()
    parent1.acquire()
    with pytest.raises(LockOrderError):
        other.acquire()  # inode -> alloc: inversion
    parent1.release()


def test_without_lockdep_orders_are_not_checked() -> None:
    a, b = Mutex("A"), Mutex("B")
    with a, b:
        pass
    with b, a:
        pass


def test_kernel_services_hand_out_checked_locks() -> None:
    ks = KernelServices(RamDevice(16), cache_blocks=8, debug_locks=True, commit_interval=None)
    a, b = ks.mutex("X"), ks.rwsem("Y")
    with a, b.write():
        pass
    with b.read():
        with pytest.raises(LockOrderError):
            a.acquire()
