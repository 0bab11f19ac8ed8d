"""`regard migrate --from sqlite:///a.db --to postgresql://...`: copy a store, verify it, resume.

Thin: regard.store.migrate does the work; this prints progress (on a terminal) and the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from regard.cli.common import EXIT_OK, EXIT_TAMPERED


def _migrate(args: argparse.Namespace) -> int:
    from regard.store.migrate import migrate

    bars: dict[str, Any] = {}
    interactive = sys.stderr.isatty()

    def progress(table: str, done: int, total: int) -> None:
        if not interactive:
            return
        from tqdm import tqdm

        bar = bars.get(table)
        if bar is None:
            bar = bars[table] = tqdm(total=total, desc=f"copying {table}", unit="row", file=sys.stderr)
        bar.update(done - bar.n)

    def build(done: int, total: int) -> None:
        progress("HNSW index", done, total)

    try:
        report = migrate(args.source, args.target, batch_size=args.batch, progress=progress, build_progress=build)
    finally:
        for bar in bars.values():
            bar.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for table, (source, target) in report.counts.items():
            mark = "ok" if source == target else "MISMATCH"
            print(f"{table:<12} {source:>10} in the source  {target:>10} in the target  {mark}")
        if report.audit_head:
            print(f"audit log head #{report.audit_head[0]} {report.audit_head[1]}")
        print("migration verified: counts match and the audit chain verifies on the target" if report.ok
              else "MIGRATION NOT VERIFIED:\n" + "\n".join(f"  {p}" for p in report.problems))
    return EXIT_OK if report.ok else EXIT_TAMPERED


def add_migrate_command(sub: Any) -> None:
    """Add `regard migrate` to the `regard` parser."""
    p = sub.add_parser(
        "migrate",
        help="copy a SQLite store into PostgreSQL, verify counts and the audit chain (re-run to resume)",
    )
    p.add_argument("--from", dest="source", required=True, metavar="URL", help="sqlite:///path/regard.db")
    p.add_argument("--to", dest="target", required=True, metavar="URL", help="postgresql://user@host/database")
    p.add_argument("--batch", type=int, default=2000, help="rows per committed batch (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=_migrate)
