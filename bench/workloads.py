"""Every workload of bench.py, in the table's order; each is defined in its own module:

answers.py    small, notfound, notmodified, head, close, listing: one fixed request and its answer
members.py    member, member-gz: a 1 KiB member of a tar (nginx: the same bytes as a plain file)
transfers.py  big, ranges, multirange: bytes of the 100 MiB file
gzipload.py   gzip: a JSON file coded on the fly and precompressed
memory.py     idle, slow: many connections, the server's RSS
"""

from __future__ import annotations

import answers
import gzipload
import members
import memory
import transfers
from outcome import Workload

WORKLOADS: list[Workload] = [
    *answers.WORKLOADS,
    *members.WORKLOADS,
    *transfers.WORKLOADS,
    *gzipload.WORKLOADS,
    *memory.WORKLOADS,
]
