"""`ferryman audit` (and the parts `ferryman repair` shares): arguments, stores, exit status.

    ferryman audit SOURCE [--replica TARGET ...] [--state-dir DIR] [--inventory FILE]
                   [--deep] [--stale-after AGE] [--report FILE] [--max-rate BYTES]

SOURCE and each --replica are stores as `serve` names them (a directory or
s3://bucket[/prefix], with the same AWS_* environment and --s3-endpoint);
the catalog is the one `serve` would use (SOURCE's state directory). The
expected set is that catalog's live entries, or --inventory.

Exit status: 0 no findings; 1 findings; 2 a usage or configuration error
(nothing was audited); 3 a store could not be read (the run is incomplete,
the summary says which store, and the next run with the same options
continues it); 4 another audit or repair of one of the stores is running
(audit/lease.py: one run per store at a time, across a fleet), nothing was
read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferryman.audit.inventory import InventoryError
from ferryman.audit.inventorycache import read_inventory_kept
from ferryman.audit.lease import StoreBusy, stores_leased
from ferryman.audit.localtree import LocalTree
from ferryman.audit.model import AuditResult, Expected
from ferryman.audit.run import Audit, AuditOptions, from_catalog, from_inventory
from ferryman.audit.stores import AuditStore
from ferryman.catalog.api import Catalog, CatalogError
from ferryman.config import Config, build_config, parse_duration, parse_size
from ferryman.errors import ConfigError

if TYPE_CHECKING:
    from ferryman.audit.bucket import Portal

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_STORE_FAILED, EXIT_BUSY = 0, 1, 2, 3, 4


def config_of(args: dict[str, Any]) -> Config:
    """The settings `serve` would use for these stores (flags, environment, defaults)."""
    names = ("source", "replica", "state_dir", "s3_endpoint", "catalog")
    wanted = {name: args.get(name) for name in names}
    return build_config(wanted)


@contextlib.contextmanager
def opened_stores(config: Config, portal: Portal | None = None) -> Iterator[list[AuditStore]]:
    """SOURCE, then each replica, as the audit reads them; closed afterwards (and the
    portal with them: one is made if a bucket needs it and none is given)."""
    locations = [config.source, *config.replica]
    if portal is None and any(loc.startswith("s3://") for loc in locations):
        from ferryman.audit.bucket import Portal  # an event loop, started on a bucket's first read

        portal = Portal()
    stores: list[AuditStore] = []
    try:
        for location in locations:
            if location.startswith("s3://"):
                from ferryman.audit.bucket import ObjectStore

                assert portal is not None
                stores.append(ObjectStore(location, config, portal))
            else:
                stores.append(LocalTree(location))
        yield stores
    finally:
        for store in stores:
            store.close()
        if portal is not None:
            portal.close()


def read_kept(args: dict[str, Any], config: Config) -> list[Expected]:
    """--inventory's entries, from the parse kept of the same bytes if there is one."""
    return read_inventory_kept(args["inventory"], config.state_path / "inventories")


def open_catalog_for(config: Config, *, inventory: bool) -> Catalog:
    """SOURCE's catalog (or --catalog's); a SQLite one is made if missing only when an
    inventory gives the expected set (the catalog then keeps the runs and what each copy
    was found to be)."""
    from ferryman.catalog.location import SQLITE
    from ferryman.catalog.open import open_catalog

    location = config.catalog_location  # the same catalog serve would use
    path = Path(location.target)
    if location.kind == SQLITE and not inventory and not path.exists():
        raise ConfigError(
            f"no catalog at {path}: nothing says what should be stored; give --inventory FILE,"
            " or --state-dir (or --catalog) where the server keeps it, or record what is"
            " stored now with `ferryman catalog scan`"
        )
    try:
        # The state directory holds the catalog file, and the locks and spool of a repair.
        config.state_path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if location.kind == SQLITE:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return open_catalog(
            location, pool_size=2, connect_timeout=config.catalog_connect_timeout,
            statement_timeout=config.catalog_statement_timeout,
        )  # fmt: skip
    except (OSError, CatalogError) as exc:
        raise ConfigError(f"catalog {location.shown}: {exc}") from None


def audit_command(args: dict[str, Any]) -> int:
    from ferryman.audit.progress import Progress
    from ferryman.audit.report import render_text, report_format, write_report

    if args.get("report"):
        report_format(str(args["report"]))  # a bad extension is refused before the run
    config = config_of(args)
    options = AuditOptions(
        deep=bool(args.get("deep")),
        stale_after=parse_duration(args["stale_after"]) if args.get("stale_after") else None,
        max_rate=parse_size(args["max_rate"]) if args.get("max_rate") else None,
    )
    try:
        inventory = read_kept(args, config) if args.get("inventory") else None
    except InventoryError as exc:
        raise ConfigError(str(exc)) from None
    catalog = open_catalog_for(config, inventory=inventory is not None)
    try:
        if inventory is not None:
            expected = from_inventory(inventory, str(args["inventory"]))
        else:
            expected = from_catalog(catalog)
        with (
            opened_stores(config) as stores,
            stores_leased(catalog, stores),
            Progress("audit", stream=sys.stderr) as progress,
        ):
            result = Audit(catalog, stores, expected, options, progress).run()
    except StoreBusy as exc:
        return busy("audit", exc)
    finally:
        catalog.close()
    print(render_text(result))
    if args.get("report"):
        write_report(str(args["report"]), result)
    return exit_status(result)


def busy(command: str, exc: StoreBusy) -> int:
    """Another run holds one of the stores: one line, and exit status 4."""
    print(f"ferryman {command}: {exc}", file=sys.stderr)
    return EXIT_BUSY


def exit_status(result: AuditResult) -> int:
    if not result.complete:
        return EXIT_STORE_FAILED
    return EXIT_FINDINGS if result.findings else EXIT_CLEAN


def repair_command(args: dict[str, Any]) -> int:
    from ferryman.app.places import replicas, source_place
    from ferryman.app.spool import Spool
    from ferryman.app.staging import stagings
    from ferryman.app.writelock import WriteLocks
    from ferryman.audit.progress import Progress
    from ferryman.audit.repair import (
        FAILED,
        PLANNED,
        REPAIRED,
        Repairer,
        good_copies,
        plan,
        render_plan,
    )
    from ferryman.audit.repair import render_json as render_repairs
    from ferryman.audit.report import render_text

    report = str(args["report"]) if args.get("report") else None
    if report and not report.lower().endswith(".json"):
        raise ConfigError(f"--report {report}: a repair report is .json")
    config = dataclasses.replace(config_of(args), allow_write=True)
    try:
        inventory = read_kept(args, config) if args.get("inventory") else None
    except InventoryError as exc:
        raise ConfigError(str(exc)) from None
    for staging in stagings(config):
        staging.sweep_dead()  # what a killed repair left
    catalog = open_catalog_for(config, inventory=inventory is not None)
    from ferryman.audit.bucket import Portal  # repairs write through the async targets

    portal = Portal()
    try:
        if inventory is not None:
            expected = from_inventory(inventory, str(args["inventory"]))
        else:
            expected = from_catalog(catalog)
        with opened_stores(config, portal) as stores, stores_leased(catalog, stores):
            options = AuditOptions(deep=bool(args.get("deep")))
            with Progress("repair: audit", stream=sys.stderr) as progress:
                result = Audit(catalog, stores, expected, options, progress, kind="repair").run()
            wanted = {e.key: e for e in expected.live()}
            repairs = plan(result, wanted)
            if args.get("apply") and any(r.outcome == PLANNED for r in repairs):
                places = [source_place(config), *replicas(config)]
                locks = WriteLocks(str(config.state_path / "locks"), config.lock_timeout,
                                   fleet=catalog, scope=places[0].id)  # fmt: skip
                try:
                    fixer = Repairer(catalog, stores, places, Spool.of(config), locks, portal)
                    fixer.apply(repairs, wanted, good_copies(result))
                finally:
                    locks.close()
                    for place in places:
                        portal.call(place.target.aclose())
    except StoreBusy as exc:
        return busy("repair", exc)
    finally:
        catalog.close()
    applied = bool(args.get("apply"))
    print(render_text(result))
    print(render_plan(repairs, applied))
    if report:
        _write_text(report, render_repairs(result, repairs, applied))
    if not result.complete or any(r.outcome == FAILED for r in repairs):
        return EXIT_STORE_FAILED
    left = [r for r in repairs if r.outcome not in (REPAIRED, "already good")]
    return EXIT_FINDINGS if left else EXIT_CLEAN


def _write_text(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ConfigError(f"--report {path}: cannot write it ({exc.strerror})") from None
