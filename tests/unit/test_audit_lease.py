"""A run leases its stores in the order of their ids, all or none."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import pytest

from ferryman.audit.lease import StoreBusy, lease_name, stores_leased
from ferryman.audit.stores import AuditStore
from ferryman.catalog.api import Catalog, KeyBusy


class Store:
    def __init__(self, name: str) -> None:
        self.name = name
        self.id = name.rstrip("/")


class Leases:
    """A catalog's leases in memory: who holds what, and the order they were taken in."""

    def __init__(self, busy: set[str]) -> None:
        self.busy = busy
        self.held: list[str] = []
        self.taken: list[str] = []

    @contextlib.contextmanager
    def lease(self, name: str) -> Iterator[None]:
        if name in self.busy:
            raise KeyBusy("held")
        self.held.append(name)
        self.taken.append(name)
        try:
            yield
        finally:
            self.held.remove(name)


def leased(leases: Leases, names: list[str]) -> Any:
    stores = cast(list[AuditStore], [Store(n) for n in names])
    return stores_leased(cast(Catalog, leases), stores)


def test_every_store_is_leased_in_the_order_of_its_id() -> None:
    leases = Leases(set())
    with leased(leases, ["s3://b/", "/srv/z", "/srv/a"]):
        assert leases.held == ["run:/srv/a", "run:/srv/z", "run:s3://b"]
    assert leases.held == []


def test_a_busy_store_lets_go_of_those_taken_before_it_and_is_named() -> None:
    leases = Leases({"run:/srv/z"})
    with pytest.raises(StoreBusy) as raised, leased(leases, ["/srv/a", "/srv/z", "s3://b"]):
        pytest.fail("the block ran without every lease")
    assert raised.value.store == "/srv/z" and "/srv/z is running" in str(raised.value)
    assert leases.taken == ["run:/srv/a"] and leases.held == []
    assert lease_name(cast(AuditStore, Store("s3://b/"))) == "run:s3://b"
