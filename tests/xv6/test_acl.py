"""POSIX ACLs in xv6, through the direct runtime: what the kernel leaves to a file
system (the mode follows the access ACL, chmod rewrites it, a create inherits the
default ACL) and what fsck checks. The mount test (tests/fuse/test_acl_handles.py)
compares the same with ext4; the expectations here are ext4's, taken from it."""

from __future__ import annotations

import errno
import stat

from bento_user.api import Request, acl
from filesystems.xv6 import _xattr as xattr
from filesystems.xv6.fsck import fsck

from .conftest import Mounted, remount
from .test_ops import errno_of

NO = 0xFFFFFFFF
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = (acl.USER_OBJ, acl.USER, acl.GROUP_OBJ,
                                               acl.GROUP, acl.MASK, acl.OTHER)


def value(*entries: tuple[int, int, int]) -> bytes:
    return acl.encode(list(entries))


# `setfacl -d -m u:1000:rwx,g:1002:rx` on a directory made under umask 077
DEFAULT = value((USER_OBJ, 7, NO), (USER, 7, 1000), (GROUP_OBJ, 0, NO), (GROUP, 5, 1002),
                (MASK, 7, NO), (OTHER, 0, NO))


def test_a_create_under_a_default_acl_takes_it_instead_of_the_umask() -> None:
    """ext4, umask 077: open(O_CREAT, 0666) gives 0660 with the mask rw-; mkdir 0777
    gives 0770 and inherits the default ACL itself."""
    mode, access, default = acl.on_create(DEFAULT, stat.S_IFREG | 0o666, 0o077)
    assert mode == stat.S_IFREG | 0o660 and default is None
    assert acl.parse(access or b"") == acl.parse(value(
        (USER_OBJ, 6, NO), (USER, 7, 1000), (GROUP_OBJ, 0, NO), (GROUP, 5, 1002),
        (MASK, 6, NO), (OTHER, 0, NO)))
    mode, access, default = acl.on_create(DEFAULT, stat.S_IFDIR | 0o777, 0o077)
    assert mode == stat.S_IFDIR | 0o770 and default == DEFAULT and access is not None
    assert acl.on_create(None, stat.S_IFREG | 0o666, 0o022) == (stat.S_IFREG | 0o644, None, None)


def test_the_mode_follows_the_access_acl_and_chmod_rewrites_it(mounted: Mounted) -> None:
    c, stranger = mounted.c, mounted.rt.client(Request(uid=1001, gid=1001))
    c.write_bytes("/f", b"secret", mode=0o640)
    grant = value((USER_OBJ, 6, NO), (USER, 6, 1000), (GROUP_OBJ, 4, NO), (MASK, 6, NO),
                  (OTHER, 0, NO))
    c.setxattr("/f", acl.ACCESS, grant)
    assert stat.S_IMODE(c.stat("/f").mode) == 0o660  # the group bits are the mask's
    c.chmod("/f", 0o600)
    kept = acl.parse(c.getxattr("/f", acl.ACCESS))
    assert (MASK, 0, NO) in kept and (USER, 6, 1000) in kept
    # an ACL the mode says is not kept; the mode takes it
    c.setxattr("/f", acl.ACCESS, value((USER_OBJ, 7, NO), (GROUP_OBJ, 5, NO), (OTHER, 1, NO)))
    assert stat.S_IMODE(c.stat("/f").mode) == 0o751
    assert errno_of(c.getxattr, "/f", acl.ACCESS) == errno.ENODATA
    # only the owner changes them; a default ACL only on a directory; ACLs must parse
    assert errno_of(stranger.setxattr, "/f", acl.ACCESS, grant) == errno.EPERM
    assert errno_of(c.setxattr, "/f", acl.DEFAULT, DEFAULT) == errno.EACCES
    assert errno_of(c.setxattr, "/f", acl.ACCESS, grant[:-4]) == errno.EINVAL
    assert errno_of(c.setxattr, "/f", b"system.other", b"x") == errno.EOPNOTSUPP


def test_inherited_acls_are_on_disk(mounted: Mounted) -> None:
    c = mounted.c
    c.mkdir("/d", 0o700)
    c.setxattr("/d", acl.DEFAULT, DEFAULT)
    mounted.rt.client(Request(umask=0o077)).write_bytes("/d/new", b"", mode=0o666)
    c.mkdir("/d/sub", 0o777)
    mounted.reopen()
    c = mounted.c
    assert stat.S_IMODE(c.stat("/d/new").mode) == 0o660
    assert (USER, 7, 1000) in acl.parse(c.getxattr("/d/new", acl.ACCESS))
    assert c.getxattr("/d/sub", acl.DEFAULT) == DEFAULT


def test_fsck_reports_an_acl_that_does_not_parse(mounted: Mounted) -> None:
    mounted.c.write_bytes("/f", b"")
    fs, ino = mounted.rt.fs, mounted.c.stat("/f").ino
    ip = fs.icache.iget(ino)
    with fs.transaction() as h:  # below the checks setxattr makes
        xattr.save(fs.ks, fs.bmap, h, ip, {acl.ACCESS: value((USER_OBJ, 6, NO))})
        fs.icache.iupdate(h, ip)
    mounted.rt.close()
    problems = fsck(remount(mounted.dev)).problems
    assert problems == [f"inode {ino}: system.posix_acl_access is not a valid POSIX ACL"]
