"""xv6 grown up for real programs; FORMAT.md describes the disk.

Modules, bottom-up (cf. xv6's fs.c):

- ``_format``  the on-disk layout: geometry, superblock, inode and entry records
- ``_inode``   in-memory inodes
- ``_alloc``   block and inode bitmaps, next-fit, blocks waiting for a commit
- ``_bmap``    direct/indirect block mapping, walking and freeing
- ``_dir``     directory blocks and the in-memory name index
- ``_xattr``   the extended-attribute block
- ``_perm``    Linux's permission rules
- ``_fs``      ``Xv6``: the operations, locking, orphans
- ``_upgrade`` the live-upgrade state handed to the next version
- ``mkfs``, ``fsck``  the tools
"""

from ._fs import Xv6 as Xv6
from .mkfs import mkfs as mkfs
