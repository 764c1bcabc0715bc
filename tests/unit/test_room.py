"""The cache's bound as bookkeeping: charges cover what a write allocates, and reservations
taken together never pass --cache-max-size (room.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ferryman.cache.room import Room, Scan, block_charge, entry_charge

UNIT = 4096


def pages(start: int, length: int, unit: int) -> set[int]:
    return set(range(start // unit, (start + length - 1) // unit + 1)) if length else set()


@given(
    slot=st.integers(1, 3 * UNIT),
    lengths=st.lists(st.integers(0, 3 * UNIT), min_size=1, max_size=12),
    unit=st.sampled_from([512, 1024, 4096, 65536]),
)
def test_block_charges_cover_every_page_their_bytes_touch(
    slot: int, lengths: list[int], unit: int
) -> None:
    touched: set[int] = set()
    charged = 0
    for index, length in enumerate(lengths):
        length = min(length, slot)
        mine = pages(index * slot, length, unit)
        assert block_charge(index, slot, length, unit) == len(mine) * unit
        touched |= mine
        charged += block_charge(index, slot, length, unit)
    assert charged >= len(touched) * unit  # shared pages are charged twice: never short


def test_entry_charge_covers_directory_meta_and_map() -> None:
    assert entry_charge(300, 10, UNIT) == 3 * UNIT
    assert entry_charge(UNIT, UNIT + 1, UNIT) == (1 + 2 + 2) * UNIT


def test_an_unmeasured_room_takes_anything_until_the_first_scan() -> None:
    room = Room(max_size=10 * UNIT, min_free=0)
    assert room.reserve(100 * UNIT)
    room.release(100 * UNIT)
    room.scanned(Scan(total_bytes=8 * UNIT, free_bytes=10**9, unit=UNIT, committed_at_start=0))
    assert room.reserve(2 * UNIT) and not room.reserve(1)


# One step of a filler's life: reserve, write (commit: `allocated` <= the charge
# reaches the disk), abandon (release), or an eviction scan, possibly with a
# write landing while it runs.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 8 * UNIT)),
        st.tuples(st.just("commit"), st.floats(0, 1)),
        st.tuples(st.just("release"), st.just(0)),
        st.tuples(st.just("scan"), st.booleans()),
        st.tuples(st.just("evict"), st.floats(0, 1)),
    ),
    max_size=60,
)


@given(
    max_size=st.integers(0, 64 * UNIT),
    min_free=st.integers(0, 16 * UNIT),
    capacity=st.integers(16 * UNIT, 128 * UNIT),
    plan=steps,
)
def test_reservations_never_pass_the_bound_together(
    max_size: int, min_free: int, capacity: int, plan: list[tuple[str, object]]
) -> None:
    room = Room(max_size=max_size, min_free=min_free)
    on_disk = 0  # what the entries really take
    promised: list[int] = []  # reservations not yet committed or released

    def scan(write_during: bool) -> None:
        nonlocal on_disk
        mark = room.scan_started()
        seen = on_disk
        if write_during and promised:  # lands after the scan walked past it
            size = promised.pop()
            room.commit(size)
            on_disk += size
        room.scanned(Scan(seen, capacity - seen, UNIT, mark))

    scan(False)
    for op, arg in plan:
        if op == "reserve":
            assert isinstance(arg, int)
            if room.reserve(arg):
                promised.append(arg)
        elif op == "commit" and promised:
            assert isinstance(arg, float)
            size = promised.pop(0)
            room.commit(size)
            on_disk += int(size * arg)  # a failed or short write allocates less
        elif op == "release" and promised:
            room.release(promised.pop())
        elif op == "scan":
            assert isinstance(arg, bool)
            scan(arg)
        elif op == "evict":
            assert isinstance(arg, float)
            on_disk -= int(on_disk * arg)  # also: entries dropped between scans
        assert on_disk <= room.held
        assert room.reserved == sum(promised)
        # Even if every promise is then written in full, both limits hold.
        assert on_disk + sum(promised) <= max_size
        assert capacity - on_disk - sum(promised) >= min_free
