"""``ktrdr-store``: work on the data-store's files directly, without NATS.

``ktrdr-store import-csv DIR [--data-dir PATH] [--dry-run]`` imports the old system's
``SYMBOL_TIMEFRAME.csv`` files (see ``importer``) and prints what it did per file and in total;
it exits 1 when any file was skipped entirely. ``ktrdr-store datasets`` lists what is stored.
The data directory defaults to ``KTRDR_DATA_DIR`` (``./data``).

Run it while the data-store is stopped, or on datasets no load is writing to: it merges into the
same files as the service, each write atomic, but not coordinated with the service's writes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ktrdr_shared.errors import ConfigError
from ktrdr_shared.types import from_unix_nanos

from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.importer import FileReport, csv_files, import_file
from ktrdr_data_store.store import BarStore, MemoryBarStore, ParquetBarStore


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``ktrdr-store`` command; return the process exit status."""
    args = _parser().parse_args(argv)
    try:
        data_dir = args.data_dir or Path(DataStoreSettings.from_env().data_dir)
    except ConfigError as e:
        print(f"ktrdr-store: {e.message}", file=sys.stderr)
        return 2
    if args.command == "import-csv":
        return import_csv(args.source, data_dir, dry_run=args.dry_run)
    return list_datasets(data_dir)


def import_csv(source: Path, data_dir: Path, *, dry_run: bool = False) -> int:
    """Import a directory's (or one file's) CSV files; print a summary; 1 if any was skipped."""
    if source.is_dir():
        files = csv_files(source)
    elif source.is_file():
        files = [source]
    else:
        print(f"ktrdr-store: {source} is neither a directory nor a file", file=sys.stderr)
        return 2
    if not files:
        print(f"ktrdr-store: no .csv files in {source}", file=sys.stderr)
        return 1
    # A dry run into a store that does not exist yet compares with an empty one, creating nothing.
    fresh = dry_run and not (data_dir / "bars").is_dir()
    store: BarStore = MemoryBarStore() if fresh else ParquetBarStore(data_dir)
    verb = "would store" if dry_run else "stored"
    reports = []
    for path in files:
        report = import_file(store, path, dry_run=dry_run)
        reports.append(report)
        print(_describe(report, verb), flush=True)
    skipped = sum(r.skipped is not None for r in reports)
    note = " (dry run: nothing written)" if dry_run else ""
    print(f"total: {len(reports)} files ({skipped} skipped): {_counts(reports, verb)}{note}")
    print(f"data dir: {data_dir}")
    return 1 if skipped else 0


def list_datasets(data_dir: Path) -> int:
    """Print every stored dataset with its rows and first and last bar."""
    if not (data_dir / "bars").is_dir():
        print(f"no datasets in {data_dir}")
        return 0
    datasets = ParquetBarStore(data_dir).datasets()
    print(f"{'symbol':<12} {'timeframe':<9} {'rows':>12}  {'first':<25} {'last':<25}")
    for d in datasets:
        first = from_unix_nanos(d.first_ns).isoformat() if d.first_ns is not None else "-"
        last = from_unix_nanos(d.last_ns).isoformat() if d.last_ns is not None else "-"
        print(f"{d.symbol_key:<12} {d.timeframe.value:<9} {d.rows:>12,}  {first:<25} {last:<25}")
    print(f"{len(datasets)} datasets in {data_dir}")
    return 0


def _describe(report: FileReport, verb: str) -> str:
    if report.skipped is not None:
        return f"{report.path.name}: skipped: {report.skipped}"
    lines = [f"{report.path.name} -> {report.symbol} {report.timeframe}: {_counts([report], verb)}"]
    for reason, rejects in report.rejects.items():
        lines.append(
            f"    rejected {rejects.count:,}: {reason} "
            f"(first at line {rejects.first_line}: {rejects.example})"
        )
    if report.volume_zeroed:
        lines.append(
            f"    volume missing or negative in {report.volume_zeroed:,} rows: stored as 0"
        )
    return "\n".join(lines)


def _counts(reports: list[FileReport], verb: str) -> str:
    read = sum(r.rows_read for r in reports)
    stored = sum(r.stored for r in reports)
    duplicates = sum(r.duplicates for r in reports)
    rejected = sum(r.rejected for r in reports)
    return (
        f"{read:,} rows read, {stored:,} {verb} (new), {duplicates:,} duplicates, "
        f"{rejected:,} rejected"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktrdr-store", description="Work on the data-store's files directly, without NATS."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    imports = commands.add_parser(
        "import-csv",
        help="import the old system's SYMBOL_TIMEFRAME.csv files",
        description="Import SYMBOL_TIMEFRAME.csv files (UTC ISO timestamps, OHLCV); naive "
        "timestamps are read as UTC. Bars already stored are kept as they are.",
    )
    imports.add_argument(
        "source", type=Path, metavar="DIR", help="a directory of .csv files (or one file)"
    )
    imports.add_argument("--dry-run", action="store_true", help="report, write nothing")
    listing = commands.add_parser("datasets", help="list the stored datasets")
    for sub in (imports, listing):
        sub.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="the store's root (default: KTRDR_DATA_DIR or ./data)",
        )
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
