"""The file-system API (Bento's libBentoFS): what a file system implements and sees.

- ``_types``       requests, attributes, directory entries, ``FsError``, flags
- ``_filesystem``  the ``Filesystem`` base class: the operations and their contracts
- ``_fsck``        ``FsckReport``: what every checker returns, with e2fsck's exit codes
- ``_acl``         POSIX ACLs as Linux stores them, and what the kernel leaves to a file
  system that keeps them: exported as the namespace ``acl`` (``acl.on_create``, ...)
"""

from . import _acl as acl

from ._filesystem import Filesystem as Filesystem
from ._fsck import EXIT_CLEAN as EXIT_CLEAN
from ._fsck import EXIT_CORRECTED as EXIT_CORRECTED
from ._fsck import EXIT_ERRORS as EXIT_ERRORS
from ._fsck import EXIT_OPERATIONAL as EXIT_OPERATIONAL
from ._fsck import FsckReport as FsckReport
from ._fsck import Progress as Progress
from ._types import FALLOC_FL_KEEP_SIZE as FALLOC_FL_KEEP_SIZE
from ._types import FALLOC_FL_PUNCH_HOLE as FALLOC_FL_PUNCH_HOLE
from ._types import FALLOC_FL_ZERO_RANGE as FALLOC_FL_ZERO_RANGE
from ._types import RENAME_EXCHANGE as RENAME_EXCHANGE
from ._types import RENAME_NOREPLACE as RENAME_NOREPLACE
from ._types import ROOT_INODE as ROOT_INODE
from ._types import ROOT_REQUEST as ROOT_REQUEST
from ._types import SEEK_DATA as SEEK_DATA
from ._types import SEEK_HOLE as SEEK_HOLE
from ._types import XATTR_CREATE as XATTR_CREATE
from ._types import XATTR_REPLACE as XATTR_REPLACE
from ._types import Attr as Attr
from ._types import DirEntry as DirEntry
from ._types import ErrorRecord as ErrorRecord
from ._types import FileHandle as FileHandle
from ._types import FsError as FsError
from ._types import InodeNo as InodeNo
from ._types import Request as Request
from ._types import SetAttr as SetAttr
from ._types import StatFs as StatFs
from ._types import UpgradeState as UpgradeState
from ._types import corrupt as corrupt
