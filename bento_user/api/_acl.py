"""POSIX access control lists in the form Linux stores them: the extended attributes
``system.posix_acl_access`` and ``system.posix_acl_default`` (version 2: a 4-byte
header, then 8-byte entries of tag, permissions and id).

Through FUSE the kernel enforces ACLs and caches them, but it leaves three things to
the file system (fs/fuse/acl.c: "Fuse userspace is responsible for updating access
permissions in the inode"), and a local file system does them in the same places.
They are here as plain functions over the attribute's bytes, so every file system
that sets ``Filesystem.posix_acls`` computes them as Linux does:

- ``on_set``: a new access ACL sets the mode's permission bits, and is not stored at
  all when the mode already says everything it says (posix_acl_update_mode);
- ``on_chmod``: chmod rewrites the stored access ACL's owner, mask (or group) and
  other entries (posix_acl_chmod);
- ``on_create``: a new inode under a directory with a default ACL takes its mode and
  its ACLs from that, not from the umask (posix_acl_create);

and ``permits``, the check itself, for a runtime where no kernel checked first.
"""

from __future__ import annotations

import errno
import stat
import struct
from collections import Counter

from ._types import FsError, Request

ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"
NAMES = (ACCESS, DEFAULT)

USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_TAGS = (USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER)
_VERSION = 2
_NO_ID = 0xFFFFFFFF  # the id of the entries that name no one (owner, group, mask, other)
_HEAD = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")

Entry = tuple[int, int, int]  # (tag, permission bits rwx, uid or gid)


def parse(value: bytes) -> list[Entry]:
    """The entries of a valid ACL in Linux's order (EINVAL otherwise, as setxattr
    answers): one owner, group and other entry each; a mask whenever a named user or
    group appears; no one named twice."""
    if len(value) < _HEAD.size or (len(value) - _HEAD.size) % _ENTRY.size \
            or _HEAD.unpack_from(value)[0] != _VERSION:
        raise FsError(errno.EINVAL, "not a version 2 POSIX ACL")
    entries = sorted((tag, perm, _NO_ID if tag in (USER_OBJ, GROUP_OBJ, MASK, OTHER) else uid)
                     for tag, perm, uid in _ENTRY.iter_unpack(value[_HEAD.size:]))
    tags = Counter(tag for tag, _, _ in entries)
    named = {(tag, uid) for tag, _, uid in entries if tag in (USER, GROUP)}
    if (set(tags) - set(_TAGS) or any(perm > 7 for _, perm, _ in entries)
            or tags[USER_OBJ] != 1 or tags[GROUP_OBJ] != 1 or tags[OTHER] != 1
            or tags[MASK] > 1 or (named and not tags[MASK])
            or len(named) != tags[USER] + tags[GROUP]):
        raise FsError(errno.EINVAL, "not a valid POSIX ACL")
    return entries


def encode(entries: list[Entry]) -> bytes:
    return _HEAD.pack(_VERSION) + b"".join(_ENTRY.pack(*e) for e in sorted(entries))


def _perm(entries: list[Entry], tag: int) -> int | None:
    return next((perm for t, perm, _ in entries if t == tag), None)


def mode_bits(entries: list[Entry]) -> int:
    """The permission bits an ACL shows in the mode: the group's are the mask's."""
    group = _perm(entries, MASK)
    group = _perm(entries, GROUP_OBJ) if group is None else group
    return (_perm(entries, USER_OBJ) or 0) << 6 | (group or 0) << 3 | (_perm(entries, OTHER) or 0)


def is_minimal(entries: list[Entry]) -> bool:
    """Says nothing the mode does not (owner, group and other entries only)."""
    return all(tag in (USER_OBJ, GROUP_OBJ, OTHER) for tag, _, _ in entries)


def on_set(value: bytes, mode: int, req: Request, gid: int) -> tuple[int, bytes | None]:
    """Setting the access ACL ``value`` on an inode of ``mode`` and group ``gid``:
    (its new mode, the value to store or None to store none). Setgid goes unless the
    caller is in the file's group or root, as Linux strips it."""
    if not value:  # an empty value removes the ACL, as Linux's setxattr takes it
        return mode, None
    entries = parse(value)
    mode = mode & ~0o777 | mode_bits(entries)
    if req.uid != 0 and not req.in_group(gid):
        mode &= ~stat.S_ISGID
    return mode, None if is_minimal(entries) else encode(entries)


def on_chmod(value: bytes, mode: int) -> bytes:
    """The stored access ACL after chmod to ``mode``."""
    entries = parse(value)
    group_tag = MASK if _perm(entries, MASK) is not None else GROUP_OBJ
    shift = {USER_OBJ: 6, group_tag: 3, OTHER: 0}
    return encode([(t, mode >> shift[t] & 7 if t in shift else perm, uid)
                   for t, perm, uid in entries])


def on_create(default: bytes | None, mode: int, umask: int
              ) -> tuple[int, bytes | None, bytes | None]:
    """A new inode of ``mode`` (type bits included) in a directory whose default ACL
    is ``default`` (None: it has none): (its mode, its access ACL or None, its
    default ACL or None). Without a default ACL the umask applies; with one it does
    not, and the new inode's entries are the default's, masked by ``mode``
    (posix_acl_create_masq). A directory inherits the default ACL itself."""
    if stat.S_ISLNK(mode):
        return mode, None, None
    if not default:
        return mode & ~(umask & 0o777), None, None
    perms, out = mode & 0o777, []
    for tag, perm, uid in parse(default):
        if tag == USER_OBJ:
            perm &= perms >> 6
            perms &= perm << 6 | 0o077
        elif tag == OTHER:
            perm &= perms & 7
            perms &= perm | 0o770
        out.append((tag, perm, uid))
    group_tag = MASK if _perm(out, MASK) is not None else GROUP_OBJ
    out = [(t, perm & perms >> 3 & 7 if t == group_tag else perm, uid) for t, perm, uid in out]
    perms &= (_perm(out, group_tag) or 0) << 3 | 0o707
    return (mode & ~0o777 | perms, None if is_minimal(out) else encode(out),
            default if stat.S_ISDIR(mode) else None)


def permits(value: bytes, req: Request, uid: int, gid: int, mask: int) -> bool:
    """Linux's ACL check (without root's override, which ``Request.may`` adds): the
    owner by its entry; a named user by its entry within the mask; then every
    matching group entry, any one granting ``mask`` within the mask; else other."""
    entries = parse(value)
    limit = _perm(entries, MASK)
    limit = 7 if limit is None else limit
    if req.uid == uid:
        return _perm(entries, USER_OBJ) & mask == mask  # type: ignore[operator]
    for tag, perm, who in entries:
        if tag == USER and who == req.uid:
            return perm & limit & mask == mask
    groups = [perm for tag, perm, who in entries
              if (tag == GROUP_OBJ and req.in_group(gid)) or (tag == GROUP and req.in_group(who))]
    if groups:
        return any(perm & limit & mask == mask for perm in groups)
    return (_perm(entries, OTHER) or 0) & mask == mask
