"""The POSIX-model state machine (fuzz/ops.py) on xv6, through the direct runtime."""

from hypothesis import settings

from fuzz.ops import machine
from fuzz.target import Target

FileSystemMachine = machine(Target.load("xv6"))

FileSystemMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30,
                                               deadline=None)
TestXv6AgainstModel = FileSystemMachine.TestCase
