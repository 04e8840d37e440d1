"""What the ops fuzzer's new rules found in tiny (issue 17): a chown clears setgid when
the file is group-executable, even root's; an owner may give a file only to a group
of theirs, and cannot set setgid on a file outside her groups; a rename over a file
whose bytes look like directory entries is not "directory not empty"."""

from __future__ import annotations

import errno

import pytest

from bento_user.api import Request

ALICE = Request(uid=1000, gid=1000, umask=0o022)


def test_a_chown_clears_setuid_and_group_executable_setgid(tiny_rt) -> None:  # type: ignore[no-untyped-def]
    c = tiny_rt.client()
    c.write_bytes(b"/f", b"#!/bin/sh\n")
    c.chmod(b"/f", 0o6755)
    c.chown(b"/f", 0, 0)
    assert c.stat(b"/f").mode & 0o7777 == 0o755
    c.chmod(b"/f", 0o2745)                  # setgid without group x stays for root
    c.chown(b"/f", 0, 0)
    assert c.stat(b"/f").mode & 0o7777 == 0o2745


def test_an_owner_gives_a_file_only_to_a_group_of_theirs(tiny_rt) -> None:  # type: ignore[no-untyped-def]
    c = tiny_rt.client()
    c.write_bytes(b"/f", b"x")
    c.chown(b"/f", 1000, 1000)
    alice = tiny_rt.client(ALICE)
    with pytest.raises(OSError) as e:
        alice.chown(b"/f", -1, 0)
    assert e.value.errno == errno.EPERM
    alice.chown(b"/f", -1, 1000)
    assert (c.stat(b"/f").uid, c.stat(b"/f").gid) == (1000, 1000)


def test_an_owner_outside_the_files_group_cannot_set_setgid(tiny_rt) -> None:  # type: ignore[no-untyped-def]
    c = tiny_rt.client()
    c.write_bytes(b"/f", b"x")
    c.chown(b"/f", 1000, 0)
    tiny_rt.client(ALICE).chmod(b"/f", 0o6766)
    assert c.stat(b"/f").mode & 0o7777 == 0o4766


def test_a_rename_over_a_file_that_looks_like_a_directory(tiny_rt) -> None:  # type: ignore[no-untyped-def]
    c = tiny_rt.client()
    c.write_bytes(b"/over", bytes([128]) * 4096 * 2)   # every "entry" names inode 128...
    c.write_bytes(b"/f", b"new")
    c.rename(b"/f", b"/over")
    assert c.read_bytes(b"/over") == b"new"
