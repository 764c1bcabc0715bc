"""The segments of a download: which bytes each connection fetches, and how far it got.

A `Segment` is bytes [start, end) of the file, of which the first `done`
are written; `end` is None when the size is unknown (then there is one
segment, fetched to the end of the body). `plan` turns what a sidecar
recorded into the work of this run: the written part of every segment is
kept as a complete segment, and what is left is split, largest piece first,
until there is a piece per connection or the pieces would be too small.
Every byte of the file is in exactly one segment, before and after (the
property tests check it). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_SPLIT = 1024 * 1024  # a segment is not split into pieces smaller than this


@dataclass(slots=True)
class Segment:
    start: int
    end: int | None  # exclusive; None: to the end of the body (size unknown)
    done: int = 0  # bytes [start, start + done) are written

    @property
    def next(self) -> int:
        """The first byte still to fetch."""
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.end is not None and self.next >= self.end

    @property
    def left(self) -> int | None:
        return None if self.end is None else self.end - self.next


def whole(size: int | None) -> list[Segment]:
    """A fresh download: one segment for the whole file."""
    return [Segment(0, size)] if size != 0 else [Segment(0, 0)]


def plan(segments: list[Segment], connections: int, min_split: int = MIN_SPLIT) -> list[Segment]:
    """The segments of this run: written parts kept, the rest split for `connections`.

    Adjacent complete segments are merged (the sidecar stays short however
    often a download is resumed). A segment with no end is never split.
    """
    if any(seg.end is None for seg in segments):
        return segments  # the one segment of a body of unknown size
    kept: list[Segment] = []
    holes: list[Segment] = []
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.complete:
            _append_complete(kept, seg.start, seg.end or seg.start)
            continue
        if seg.done:
            _append_complete(kept, seg.start, seg.next)
        holes.append(Segment(seg.next, seg.end))
    while len(holes) < connections:
        sized = [(h.end - h.start, h.start, h.end) for h in holes if h.end is not None]
        if not sized:
            break
        length, start, end = max(sized)
        if length < 2 * min_split:
            break
        middle = start + length // 2
        holes = [h for h in holes if h.start != start]
        holes += [Segment(start, middle), Segment(middle, end)]
    return sorted(kept + holes, key=lambda s: s.start)


def _append_complete(kept: list[Segment], start: int, end: int) -> None:
    if start == end and kept:
        return  # nothing written: no segment needed (an empty file keeps its one)
    last = kept[-1] if kept else None
    if last is not None and last.end == start:
        last.end = end
        last.done = end - last.start
    else:
        kept.append(Segment(start, end, end - start))


def written(segments: list[Segment]) -> int:
    """Bytes written so far, over all segments."""
    return sum(seg.done for seg in segments)
