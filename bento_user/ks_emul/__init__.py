"""Emulated kernel services: what a kernel gives a file system (Bento's libBentoKS).

Modules, bottom-up:

- ``_locks``          mutex, semaphore, rw-semaphore with owners; lockdep
- ``_time``           the clock
- ``_buffer_head``    one cached block and its rules of use
- ``_buffer_cache``   the arena, LRU eviction, readahead, merged write-back
- ``_writeback``      the background writer and its limits
- ``_journal_format`` the journal's on-disk blocks (docs/journal-format.md)
- ``_recovery``       scan, revoke, replay at mount; the log read for tools
- ``_transaction``    a transaction and the handles on it
- ``_journal``        starting handles, commit, checkpoint, the commit timer
- ``_undo``           one operation's journaled blocks as they were, to undo it
- ``_faults``         injected failures at kernel-services calls (for the fuzzers)
- ``_process``        who is asking: a pid's executable, command line, uid, parent
- ``_services``       ``KernelServices``: the one object a file system is handed

The locking rules across them are in docs/locking.md.
"""

from ._buffer_cache import BufferCache as BufferCache
from ._buffer_cache import CacheStatistics as CacheStatistics
from ._buffer_head import BufferHead as BufferHead
from ._writeback import WritebackLimits as WritebackLimits
from ._journal import Journal as Journal
from ._transaction import JournalStatistics as JournalStatistics
from ._transaction import Handle as Handle
from ._transaction import JournalAbortedError as JournalAbortedError
from ._transaction import JournalError as JournalError
from ._transaction import Transaction as Transaction
from ._undo import UndoLog as UndoLog
from ._faults import FAULTS as FAULTS
from ._faults import InjectedFault as InjectedFault
from ._locks import LockError as LockError
from ._locks import Lockdep as Lockdep
from ._locks import LockOrderError as LockOrderError
from ._locks import LockStatistics as LockStatistics
from ._locks import Mutex as Mutex
from ._locks import RWSemaphore as RWSemaphore
from ._locks import Semaphore as Semaphore
from ._process import ProcessInfo as ProcessInfo
from ._process import status_field as status_field
from ._process import supplementary_groups as supplementary_groups
from ._recovery import JournalCorruptError as JournalCorruptError
from ._recovery import LogContents as LogContents
from ._recovery import RecoveryReport as RecoveryReport
from ._recovery import read_log as read_log
from ._services import KernelServices as KernelServices
from ._time import Clock as Clock
from ._time import ManualClock as ManualClock
