"""The POSIX-model state machine (fuzz/xv6_model.py) on xv6, through the direct runtime."""

from hypothesis import settings

from fuzz.xv6_model import FileSystemMachine

FileSystemMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30,
                                               deadline=None)
TestXv6AgainstModel = FileSystemMachine.TestCase
