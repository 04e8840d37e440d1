"""``bento manpage``: bento(1) in roff, made by argparse-manpage from the CLI's own
parser (every subcommand with its options and help). ``scripts/setup.sh`` installs
it; by hand: ``bento manpage > /usr/local/share/man/man1/bento.1``."""

from __future__ import annotations

import argparse

from .. import __version__

DESCRIPTION = """\
bento runs file systems written in Python: it formats (mkfs), checks and repairs (fsck),
inspects unmounted images (inspect), mounts them through FUSE (mount), upgrades them
while mounted (upgrade), shows what a mount is doing (stat), traces and replays
requests (replay), fuzzes them (fuzz) and shows a file's lineage (prov). Each command
that touches a file system takes --fs NAME; bento filesystems lists the names."""


SECTIONS = [
    ("exit status", r"""0 success; 1 failure (fuzz: a bug found); 2 a usage error. fsck follows
e2fsck: 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 an operational error.
A mount of a corrupt image exits 4. A reader that stops early (| head) ends a command
with 141."""),
    ("environment", r""".TP
BENTO_LOG_DIR
where mount daemons write their logs
.TP
HYPOTHESIS_PROFILE
the fuzzers' settings profile (ci: derandomized)"""),
    ("files", r""".TP
/var/log/bento/MOUNTPOINT.HASH.log
a mount daemon's log (root; others: ~/.local/state/bento/), rotated at 8 MiB, 4 kept
.TP
/run/bento/*.sock
the control sockets that stat, sync, upgrade, debug and umount use
.TP
/sbin/mount.fuse.bento
mount(8)'s helper for "mount \-t fuse.bento" and fstab"""),
    ("see also", r"""e2fsck(8), debugfs(8), mount.fuse3(8), fusermount3(1). The project's
README and docs/ say more."""),
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("manpage", help="print the bento(1) manual page (roff)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from argparse_manpage.manpage import Manpage

    from . import build_parser

    parser = build_parser()
    parser.description = DESCRIPTION
    parser._manpage = [{"heading": h, "content": c} for h, c in SECTIONS]
    page = Manpage(parser, _data={"project_name": "bento-user", "version": __version__,
                                  "manual_title": "bento-user manual", "authors": [],
                                  "url": "", "description": "file systems in Python"},
                   format="single-commands-section")
    print(str(page), end="")
    return 0
