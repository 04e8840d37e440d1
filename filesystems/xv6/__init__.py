"""xv6 grown up for real programs; FORMAT.md describes the disk.

Modules, bottom-up (cf. xv6's fs.c, then sysfile.c):

- ``_format``  the on-disk layout: geometry, superblock, inode and entry records
- ``_inode``   in-memory inodes
- ``_alloc``   block and inode bitmaps, next-fit, blocks waiting for a commit
- ``_bmap``    direct/indirect block mapping, walking and freeing
- ``_dir``     directory blocks and the in-memory name index
- ``_xattr``   extended attributes: one block, or an index and the blocks it names
- ``_icache``  the inode cache (iget, iupdate, ialloc)
- ``_orphans`` the orphan list
- ``_names``   the name layer: names given, taken, moved (namei, dirlink)
- ``_file``    the file layer: contents read, written, truncated, synced, freed
- ``_perm``    Linux's permission rules
- ``_core``    ``Xv6Core``: the layers built at mount, life cycle, live upgrade, and
  the extension seam
- ``_fs``      ``Xv6``: the system calls
- ``_upgrade`` the live-upgrade state handed to the next version
- ``mkfs``, ``fsck``  the tools

What a subclass may use is exported here; the underscored modules are private.
"""

from ._core import OpenFile as OpenFile
from ._core import Xv6Core as Xv6Core
from ._file import OP_CREDITS as OP_CREDITS
from ._format import BLOCK_SIZE as BLOCK_SIZE
from ._format import INODE_DTYPE as INODE_DTYPE
from ._format import INODE_SIZE as INODE_SIZE
from ._format import update_superblock as update_superblock
from ._fs import Xv6 as Xv6
from ._inode import Inode as Inode
from .mkfs import mkfs as mkfs
