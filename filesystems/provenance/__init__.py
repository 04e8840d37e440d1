"""Provenance: xv6 plus a record of who did what to which file (FORMAT.md), kept in
the same journal transactions as the operations; ``query`` reads it back (lineage,
W3C PROV-JSON, a graph). Installed on a mounted xv6 by live upgrade, or mounted
directly; plain xv6 keeps the records, unused."""

from ._fs import Provenance as Provenance
from ._fs import read_log as read_log
