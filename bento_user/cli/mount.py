"""``bento mount IMAGE MOUNTPOINT``: serve a file system on an image through FUSE.

Daemonises by default and returns once the mount serves requests (``-f`` stays in
the foreground). Everything that can be checked before forking is: the mount point,
the image, FUSE itself; what only the daemon can find (a corrupt image, the image in
use) comes back through the readiness pipe as the same one-line error.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import os
import shutil
import sys
import time

from ..api import FsError
from ..runtime import control
from ..runtime.guard import ON_ERRORS
from ..runtime.loader import LoadError, absolute, instantiate, load_filesystem_class
from ..runtime.mount import Mount, MountConfig
from ._daemon import Ready, run_in_background
from ._errors import UserError
from ._fs import add_fs_argument
from ._log import default_log_path

EXIT_BUSY, EXIT_CORRUPT = 3, 4

# Options mount(8) and fstab pass that mean nothing to a FUSE daemon.
IGNORED = {"defaults", "auto", "noauto", "user", "users", "nouser", "nofail", "_netdev",
           "owner", "group"}
# Options libfuse applies to the kernel mount itself.
KERNEL = {"dev", "nodev", "suid", "nosuid", "exec", "noexec", "sync", "async", "dirsync"}
TIMES = {"noatime", "relatime", "strictatime", "nodiratime", "diratime"}  # a remount may change them


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mount", help="mount an image through FUSE",
                       description="Mount IMAGE on MOUNTPOINT. Options (-o, comma-separated): "
                       "ro, rw, noatime, relatime, strictatime, nodiratime, entry_timeout=S, "
                       "attr_timeout=S, negative_timeout=S (how long the kernel remembers a "
                       "name is missing; 0: never), timeout=S (all three), no_writeback_cache, "
                       "no_keep_cache, no_allow_other, no_default_permissions, cache_mib=N, commit=S, "
                       "poll_us=N (poll for the next request after each answer; 0: sleep), "
                       "errors=continue|remount-ro (on a corrupt block met), "
                       "and the kernel's dev/nodev/suid/nosuid/exec/noexec/sync/dirsync.")
    p.add_argument("image", help="image file or block device")
    p.add_argument("mountpoint")
    add_fs_argument(p)
    p.add_argument("--watch", action="store_true",
                   help="live-upgrade whenever a source file of the file system changes "
                   "(each pause is logged; with -f, on the terminal)")
    p.add_argument("-f", "--foreground", action="store_true", help="do not daemonise")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="log every request (implies nothing about -f)")
    p.add_argument("--pdb", action="store_true",
                   help="on a file-system bug, enter a post-mortem debugger (implies -f)")
    p.add_argument("--trace", metavar="FILE", help="record every call as JSON lines")
    p.add_argument("--log", metavar="FILE",
                   help="daemon log (default: /var/log/bento/MOUNTPOINT.HASH.log for root, "
                   "~/.local/state/bento/ for others; rotated at 8 MiB, 4 kept)")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS")
    p.set_defaults(run=run)


def parse_options(values: list[str], config: MountConfig) -> None:
    fuse = config.fuse
    for opt in (o.strip() for v in values for o in v.split(",")):
        name, _, value = opt.partition("=")
        try:
            if not opt or name in IGNORED or name.startswith("x-") or name == "comment":
                continue
            elif name == "ro":
                config.read_only = True
            elif name == "rw":
                config.read_only = False
            elif name in ("noatime", "relatime", "strictatime"):
                config.fs_options["atime"] = name
                if name == "noatime":
                    fuse.extra.add("noatime")
            elif name in ("nodiratime", "diratime"):
                config.fs_options["diratime"] = name == "diratime"
            elif name in ("entry_timeout", "attr_timeout", "negative_timeout"):
                setattr(fuse, name, float(value))
            elif name == "timeout":  # every name and attribute the kernel keeps
                fuse.entry_timeout = fuse.attr_timeout = fuse.negative_timeout = float(value)
            elif name in ("writeback_cache", "keep_cache", "allow_other", "default_permissions"):
                setattr(fuse, name, True)
            elif name.startswith("no_") and name[3:] in ("writeback_cache", "keep_cache",
                                                         "allow_other", "default_permissions"):
                setattr(fuse, name[3:], False)
            elif name == "poll_us":
                fuse.poll_us = float(value)
            elif name == "cache_mib":
                config.cache_blocks = int(value) * 256
            elif name == "commit":
                config.commit_interval = float(value)
            elif name == "errors":
                if value not in ON_ERRORS:
                    raise UserError(f"mount option errors={value}: expected "
                                    f"{' or '.join(ON_ERRORS)}", 2)
                config.errors = value
            elif name in ("fsname", "subtype") and value:
                fuse.extra.add(opt)
            elif name in KERNEL:
                if name in ("dev", "suid") and os.geteuid() != 0:
                    raise UserError(f"mount option {name}: only root may mount with {name} "
                                    f"(FUSE mounts of other users are always no{name})", 2)
                fuse.extra.add(name)
            else:
                raise UserError(f"unknown mount option {opt!r}", 2)
        except ValueError:
            raise UserError(f"mount option {opt!r}: bad value", 2) from None
    if min(fuse.entry_timeout, fuse.attr_timeout, fuse.negative_timeout) < 0 \
            or config.cache_blocks < 64:
        raise UserError("timeouts must be >= 0 and cache_mib >= 1", 2)
    if not 0 <= fuse.poll_us <= 10_000:
        raise UserError("poll_us must be from 0 to 10000 (microseconds)", 2)


def check_mountpoint(path: str) -> None:
    if not os.path.exists(path):
        raise UserError(f"{path}: mount point does not exist", 2)
    if not os.path.isdir(path):
        raise UserError(f"{path}: mount point is not a directory", 2)
    if os.path.ismount(path):
        raise UserError(f"{path}: already a mount point (busy)", EXIT_BUSY)
    if control.find_socket(path) is not None:
        try:
            control.call(path, "status", timeout=2.0)
        except OSError:
            pass  # a dead daemon's socket; bind() replaces it
        else:
            raise UserError(f"{path}: a bento daemon already serves it", EXIT_BUSY)


IMAGE_WAIT = 30.0  # seconds a mount waits for a previous daemon to let go of the image


def wait_for_image(image: str, read_only: bool, timeout: float = IMAGE_WAIT) -> None:
    """A plain ``umount`` returns before the daemon has committed and closed the
    image; a mount right after must wait for it, not fail. An image that is mounted
    is refused at once; one locked but mounted nowhere is waited for, with a message."""
    fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    try:
        deadline, said = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                return  # closing the descriptor lets go; the daemon takes its own lock
            where = mounted_at(image)
            if where is not None:
                raise UserError(f"{image}: in use by another process (mounted on {where})",
                                EXIT_BUSY)
            if time.monotonic() > deadline:
                raise UserError(f"{image}: still in use by another process after "
                                f"{timeout:g} s (a daemon that does not finish?)", EXIT_BUSY)
            if not said:
                print(f"bento: waiting for the previous daemon of {image} to let go of it "
                      f"(at most {timeout:g} s)", file=sys.stderr, flush=True)
                said = True
            time.sleep(0.1)
    finally:
        os.close(fd)


def mounted_at(image: str) -> str | None:
    """Where a mount whose source is ``image`` is (bento's default fsname), if any."""
    source = os.path.realpath(image)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            after = fields[fields.index("-") + 1:]
            if len(after) >= 2 and after[1].replace("\\040", " ") == source:
                return fields[4].replace("\\040", " ")
    return None


def check_fuse() -> None:
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        raise UserError(f"FUSE is not available: /dev/fuse: {e.strerror} "
                        "(is the fuse3 package installed and the module loaded?)") from None
    if shutil.which("fusermount3") is None:
        raise UserError("FUSE is not available: fusermount3 not found (apt install fuse3)")


def run(args: argparse.Namespace) -> int:
    image = os.path.abspath(args.image)
    mountpoint = os.path.abspath(args.mountpoint)
    config = MountConfig(image=image, mountpoint=mountpoint, fs_spec=absolute(args.fs),
                         trace_path=os.path.abspath(args.trace) if args.trace else None,
                         watch=args.watch)
    parse_options(args.options, config)
    config.fs_options["read_only"] = config.read_only
    config.fuse.pdb = args.pdb
    if not os.path.exists(image):
        raise UserError(f"{args.image}: no such image", 2)
    check_mountpoint(mountpoint)
    check_fuse()
    wait_for_image(image, config.read_only)
    try:
        config.fs_class = load_filesystem_class(config.fs_spec)
    except LoadError as e:
        raise UserError(str(e), 2) from None
    if config.fs_class.vfs_checks and not config.fuse.default_permissions:
        raise UserError(f"{config.fs_class.name} leaves permission checks to the kernel: "
                        "it cannot be mounted with no_default_permissions", 2)
    os.makedirs(control.control_dir(), mode=0o700, exist_ok=True)
    config.log_path = os.path.abspath(args.log) if args.log else default_log_path(mountpoint)
    if args.foreground or args.pdb:
        if args.watch:  # each upgrade's pause, on the terminal
            logging.getLogger("bento").setLevel(logging.INFO)
        return serve(config, _foreground_ready(mountpoint))
    logging.getLogger().setLevel(logging.DEBUG if getattr(args, "debug", False) else logging.INFO)
    return run_in_background(lambda ready: serve(config, ready), config.log_path)


def serve(config: MountConfig, ready: Ready) -> int:
    """The daemon's whole life; errors before the mount serves go to ``ready``."""
    assert config.fs_class is not None
    try:
        fs = instantiate(config.fs_class, **config.fs_options)
        mount = Mount(config, fs)
    except FsError as e:
        code = EXIT_CORRUPT if e.errno == errno.EUCLEAN else 1
        ready(f"{config.image}: cannot mount: {e.strerror}", code)
        return code
    except OSError as e:
        code = EXIT_BUSY if e.errno == errno.EBUSY else 1
        ready(e.strerror if e.filename is None else f"{e.filename}: {e.strerror}", code)
        return code
    failed: list[str] = []

    def on_ready(error: str | None) -> None:
        if error:
            failed.append(error)
        ready(error, 1, mount.warning)

    mount.serve(on_ready)
    return 1 if failed else 0


def _foreground_ready(mountpoint: str) -> Ready:
    def ready(error: str | None, code: int = 1, warning: str | None = None) -> None:
        if error:
            raise UserError(error, code)
        if warning:
            print(f"bento mount: warning: {warning}", file=sys.stderr, flush=True)
        print(f"bento: serving {mountpoint} in the foreground; Ctrl-C unmounts",
              file=sys.stderr, flush=True)
    return ready
