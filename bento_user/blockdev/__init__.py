"""Block devices: the bottom layer, where blocks meet the disk.

Modules, bottom-up:

- ``_memory``    page-aligned block memory (what O_DIRECT needs)
- ``_device``    the ``BlockDevice`` interface and its checks
- ``_image``     an image file or ``/dev/loopN`` with O_DIRECT and an exclusive lock
- ``_ram``       a RAM disk for tests and materialised crash states
- ``_recording`` logs writes and flushes; rebuilds any post-power-cut disk
- ``_fault``     fails or tears chosen I/O
- ``_overlay``   keeps writes in memory over a read-only device (fsck replays there)
"""

from ._device import SECTOR_SIZE as SECTOR_SIZE
from ._device import BlockDevice as BlockDevice
from ._device import BlockNo as BlockNo
from ._device import BlockRangeError as BlockRangeError
from ._device import Buffer as Buffer
from ._device import DeviceStatistics as DeviceStatistics
from ._fault import Fault as Fault
from ._fault import FaultDevice as FaultDevice
from ._image import ImageDevice as ImageDevice
from ._memory import PAGE_SIZE as PAGE_SIZE
from ._memory import aligned_blocks as aligned_blocks
from ._ram import RamDevice as RamDevice
from ._recording import RecordingDevice as RecordingDevice
from ._recording import WriteRecord as WriteRecord
from ._overlay import OverlayDevice as OverlayDevice
