"""What the operation fuzzer draws: users, names, data, offsets, times, values."""

from __future__ import annotations

from hypothesis import strategies as st

from bento_user.api import Request

from .model import ROOT

ALICE = Request(uid=1000, gid=1000, umask=0o022)
USERS = st.sampled_from([ROOT, ALICE])
NAMES = st.sampled_from([b"a", b"b", b"c", b"dir", b"\xff\xfe", b"caf\xc3\xa9", b"n" * 255])
BAD_NAMES = st.sampled_from([b"n" * 256])
# small writes, and runs of whole blocks (the allocator's and the mapper's run paths)
DATA = st.binary(max_size=9000) | st.builds(lambda blocks, byte: bytes([byte]) * (4096 * blocks),
                                            st.integers(1, 16), st.integers(1, 255))
# ns; before 1970 too (-1 is not "now"); beyond i64 ns (2**40 s), which is clamped
TIMES = [-1, 0, 1, -10**9 - 1, 2**40 + 7, 2**40 * 10**9, -(2**40) * 10**9]
# values around a block, several blocks, and Linux's limit (64 KiB; one more: E2BIG)
XATTR_VALUES = st.builds(lambda motif, n: (motif * n)[:n], st.binary(min_size=1, max_size=4),
                         st.sampled_from([4000, 4096, 4097, 20000, 65536, 65537]))
# around each level of a block map: 12 direct blocks (48 KiB, xv6 and tiny), then one
# indirect block of 1,024 (4 MiB + 48 KiB); holes keep these cheap
LEVEL_1, LEVEL_2 = 12 * 4096, (12 + 1024) * 4096
# xv6's third level, the triple-indirect block, starts past 4 GiB: too far for the
# model's flat bytes, so the rule that goes there (``far_write``) undoes itself
LEVEL_3 = (12 + 1024 + 1024**2) * 4096
FAR_OFFSETS = st.sampled_from([LEVEL_3 - 4096, LEVEL_3 - 1, LEVEL_3, LEVEL_3 + 4096 * 1024])
OFFSETS = st.sampled_from([0, 1, 4095, 4096, LEVEL_1 - 3, LEVEL_1, LEVEL_2 - 4096, LEVEL_2 - 1,
                           LEVEL_2, 5 * 2**20])
