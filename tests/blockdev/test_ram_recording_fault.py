"""RAM, recording and fault devices."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bento_user.blockdev import Fault, FaultDevice, RamDevice, RecordingDevice

BS = 4096


def block(value: int) -> bytes:
    return bytes([value]) * BS


def test_ram_device_round_trip_and_range() -> None:
    dev = RamDevice(8)
    dev.write_blocks(2, [block(1) + block(2)])
    assert dev.read_block(3) == block(2) and dev.read_block(0) == block(0)
    with pytest.raises(OSError) as e:
        dev.read_block(8)
    assert e.value.errno == errno.EINVAL


def test_recording_device_materialises_the_expected_states() -> None:
    rec = RecordingDevice(RamDevice.from_bytes(block(9) * 4))
    rec.write_blocks(1, [block(0xA)])       # epoch 0, in flight #0
    rec.flush()
    rec.write_blocks(2, [block(0xB)])       # epoch 1, #0
    rec.write_blocks(1, [block(0xC)])       # epoch 1, #1
    rec.flush()
    rec.write_blocks(3, [block(0xD)])       # epoch 2, #0
    assert rec.epochs == 2
    assert [r.blockno for r in rec.in_flight(0)] == [1]
    assert [r.blockno for r in rec.in_flight(1)] == [2, 1]
    assert [r.blockno for r in rec.in_flight(2)] == [3]

    def state(img: np.ndarray) -> list[int]:
        return [int(img[i, 0]) for i in range(4)]

    assert state(rec.crash_image(0)) == [9, 9, 9, 9]
    assert state(rec.crash_image(0, keep=[0])) == [9, 0xA, 9, 9]
    assert state(rec.crash_image(1)) == [9, 0xA, 9, 9]
    assert state(rec.crash_image(1, keep=[1])) == [9, 0xC, 9, 9]
    assert state(rec.crash_image(1, keep=[0])) == [9, 0xA, 0xB, 9]
    assert state(rec.crash_image(2, keep=[0])) == [9, 0xC, 0xB, 0xD]
    torn = rec.crash_image(2, torn={0: [0, 3]})
    assert list(torn[3, ::512]) == [0xD, 9, 9, 0xD, 9, 9, 9, 9]
    with pytest.raises(IndexError):
        rec.crash_image(3)
    with pytest.raises(IndexError):
        rec.crash_image(2, keep=[1])
    dev = rec.crash_device(1, keep=[0, 1])
    assert dev.read_block(1) == block(0xC) and dev.read_block(2) == block(0xB)


ops = st.lists(
    st.one_of(st.just(("flush",)), st.tuples(st.just("write"), st.integers(0, 7),
                                              st.integers(1, 255))),
    max_size=25,
)


@given(ops=ops, data=st.data())
def test_crash_image_matches_a_model(ops: list[tuple], data: st.DataObject) -> None:
    rec = RecordingDevice(RamDevice(8))
    history: list[tuple[int, int]] = []  # every write, in order
    flush_after: list[int] = []
    for op in ops:
        if op[0] == "flush":
            rec.flush()
            flush_after.append(len(history))
        else:
            rec.write_blocks(op[1], [block(op[2])])
            history.append((op[1], op[2]))
    epoch = data.draw(st.integers(0, rec.epochs), label="epoch")
    durable = flush_after[epoch - 1] if epoch else 0
    end = flush_after[epoch] if epoch < len(flush_after) else len(history)
    keep = data.draw(st.sets(st.integers(0, max(end - durable - 1, 0)))
                     if end > durable else st.just(set()), label="keep")
    model = [0] * 8
    for i, (b, v) in enumerate(history[:end]):
        if i < durable or (i - durable) in keep:
            model[b] = v
    image = rec.crash_image(epoch, keep)
    assert [int(image[i, 0]) for i in range(8)] == model
    assert len(rec.in_flight(epoch)) == end - durable


def test_fault_device_fails_chosen_writes_and_reads() -> None:
    inner = RamDevice(16)
    dev = FaultDevice(inner)
    f = dev.inject(Fault("write", blocks={5}, skip=1, times=1))
    dev.write_blocks(4, [block(1) * 2])     # touches 5: first match, skipped
    with pytest.raises(OSError) as e:
        dev.write_blocks(5, [block(2)])     # second match: fails, nothing written
    assert e.value.errno == errno.EIO and "block 5" in str(e.value)
    assert inner.read_block(5) == block(1) and f.fired == 1
    dev.write_blocks(5, [block(3)])         # times=1: done
    assert inner.read_block(5) == block(3)

    dev.inject(Fault("read", blocks=range(8, 10), times=None))
    for _ in range(3):
        with pytest.raises(OSError):
            dev.read_blocks(7, [bytearray(3 * BS)])
    assert dev.read_block(7) == block(0)
    dev.clear()
    assert dev.read_block(8) == block(0)


@pytest.mark.parametrize("silent", [False, True])
def test_fault_device_tears_a_write_along_sectors(silent: bool) -> None:
    inner = RamDevice(4)
    dev = FaultDevice(inner)
    dev.inject(Fault("write", blocks={2}, tear_sectors=[1, 7], silent=silent))
    if silent:
        dev.write_blocks(1, [block(0xEE) * 2])
    else:
        with pytest.raises(OSError):
            dev.write_blocks(1, [block(0xEE) * 2])
    torn = inner.read_block(2)
    assert [torn[s * 512] for s in range(8)] == [0, 0xEE, 0, 0, 0, 0, 0, 0xEE]


def test_fault_device_fails_a_flush() -> None:
    dev = FaultDevice(RamDevice(4))
    dev.inject(Fault("flush"))
    with pytest.raises(OSError):
        dev.flush()
    dev.flush()
