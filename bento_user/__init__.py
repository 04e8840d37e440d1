"""bento-user: write Linux file systems in Python (after Bento, FAST 2021).

Layers, bottom-up, each in its own folder:

- ``bento_user.blockdev`` — block devices: O_DIRECT image or loop device, RAM,
  recording (crash testing), fault injection.
- ``bento_user.ks_emul`` — the emulated kernel services handed to a file system:
  buffer cache, jbd2-like journal, locks, time.
"""

__version__ = "0.1.0"
