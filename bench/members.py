"""The archive-member workloads: one 1 KiB member of a tar of 1,000 members.

ferryman serves it from inside the archive (`GET /members.tar/members/member-0500.bin`,
app/archive.py). nginx serves no tar members, so it stands in with the same bytes
as a plain file under the root (`/members/member-0500.bin`, in a directory of
the same 1,000 files): the ratio to nginx is "a member against a plain file".
The other servers serve no tar members either and are "not applicable" (they
are not started).

- member     the member of the plain tar: a region of the archive's own descriptor
- member-gz  the member of the same tar gzipped: served from its extracted, checked
             copy, which the first request makes and later ones share while it is
             in use or kept (--spool-keep)

Each is a FixedRequest (bench/answers.py): one checked exchange before timing,
whose body must be the member's bytes (testfiles.member_bytes, written into
both archives and the plain file), then wrk on 64 kept-alive connections.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from answers import FixedRequest, run_fixed
from outcome import ANSWERS, Context, Outcome, Workload
from servers import Server, ServerSpec
from testfiles import (
    MEMBER_INDEX,
    MEMBERS_COUNT,
    MEMBERS_TAR,
    MEMBERS_TGZ,
    member_bytes,
    member_name,
)

PLAIN_PATH = "/" + member_name(MEMBER_INDEX)
STAND_IN = "nginx stands in, serving the same bytes as a plain file"

MEMBER_REQUESTS = (
    FixedRequest(
        "member", f"1 KiB .tar member (of {MEMBERS_COUNT:,}), keep-alive, "
        "{small_connections} connections; nginx: a plain file",
        "GET", f"/{MEMBERS_TAR}/{member_name(MEMBER_INDEX)}", 200, "file",
        content=member_bytes(MEMBER_INDEX),
    ),
    FixedRequest(
        "member-gz", f"1 KiB .tar.gz member (of {MEMBERS_COUNT:,}), keep-alive, "
        "{small_connections} connections; nginx: a plain file",
        "GET", f"/{MEMBERS_TGZ}/{member_name(MEMBER_INDEX)}", 200, "file",
        content=member_bytes(MEMBER_INDEX),
    ),
)  # fmt: skip


def not_applicable(spec: ServerSpec) -> str:
    """Why `spec` cannot be run in a member workload; "" when it can."""
    return "" if spec.members else f"serves no tar members; {STAND_IN}"


def request_for(spec: FixedRequest, server: ServerSpec) -> FixedRequest:
    """The request `server` gets: the member in its archive, or the plain file."""
    return spec if server.members == "archive" else replace(spec, path=PLAIN_PATH)


def run_member(spec: FixedRequest, server: Server, ctx: Context) -> Outcome:
    return run_fixed(request_for(spec, server.spec), server, ctx)


WORKLOADS = [
    Workload(spec.key, spec.title, ANSWERS, partial(run_member, spec), True, not_applicable)
    for spec in MEMBER_REQUESTS
]
