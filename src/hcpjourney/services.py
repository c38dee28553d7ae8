"""Use cases shared by the CLI and the API. Thin: each opens the workspace and calls a module."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hcpjourney import engine as engines
from hcpjourney.config import Workspace
from hcpjourney.errors import HcpjError
from hcpjourney.ingest.loader import FileResult, Loader, Progress, Source, discover

INGEST_FORMATS = ("contract", "open-payments")


def init_workspace(path: str | Path, *, engine: str = "duckdb", app_db: str | None = None) -> Workspace:
    """Create (or reopen) a workspace: hcpj.toml, the warehouse and the migrated app database."""
    from hcpjourney.app import db

    ws = Workspace.init(path, engine=engine, app_db=app_db)
    with warehouse(ws):
        pass
    db.upgrade(ws.app_db_url)
    return ws


@contextmanager
def warehouse(ws: Workspace, *, read_only: bool = False) -> Iterator[engines.Engine]:
    eng = engines.connect(ws, read_only=read_only)
    try:
        yield eng
    finally:
        eng.close()


def sources_for(paths: Sequence[str | Path], fmt: str = "contract") -> tuple[list[Source], list[str]]:
    """The sources an ingest of ``paths`` in format ``fmt`` loads, and files passed over."""
    if fmt == "contract":
        from hcpjourney.ingest.loader import table_for_file
        from hcpjourney.ingest.open_payments import looks_like_open_payments

        # A file that is not a contract file but an Open Payments export needs no --format.
        op = [p for p in map(Path, paths)
              if p.is_file() and table_for_file(p) is None and looks_like_open_payments(p)]
        rest = [p for p in paths if Path(p) not in op]
        found, ignored = discover(rest) if rest else ([], [])
        if op:
            more, _ = sources_for(op, "open-payments")
            found = sorted([*found, *more], key=lambda s: s.table != "hcps")
        return found, ignored
    if fmt == "open-payments":
        from hcpjourney.ingest.open_payments import OpenPaymentsFormatError, read_open_payments

        out: list[Source] = []
        for p in paths:
            try:
                outputs = read_open_payments(Path(p))
            except OpenPaymentsFormatError as exc:
                raise HcpjError(str(exc)) from None
            out.extend(Source(table=o.table, file=o.file, data=o.data) for o in outputs)
        order = {"hcps": 0}
        out.sort(key=lambda s: order.get(s.table, 1))
        return out, []
    raise HcpjError(f"unknown --format '{fmt}'; use one of {', '.join(INGEST_FORMATS)}")


def ingest(
    ws: Workspace,
    paths: Sequence[str | Path],
    *,
    fmt: str = "contract",
    progress: Callable[[Source], Progress | None] | None = None,
) -> tuple[list[FileResult], list[str]]:
    sources, ignored = sources_for(paths, fmt)
    if not sources:
        raise HcpjError(
            f"no contract files found in {', '.join(map(str, paths))}; expected files such as "
            "hcps.csv or interactions.parquet"
        )
    with warehouse(ws) as eng:
        results = Loader(ws, eng).load_all(sources, progress=progress)
    return results, ignored


# ---------------------------------------------------------------------- build
@dataclass
class BuildSummary:
    records: int
    hcps: int
    events: int


def build(ws: Workspace) -> BuildSummary:
    """Identity resolution, resolved events and 360 profiles."""
    from hcpjourney.identity.exact import resolve_exact
    from hcpjourney.identity.profiles import build_events, build_profiles

    with warehouse(ws) as eng:
        if not eng.has_table("hcps") or eng.count(eng.table("hcps")) == 0:
            raise HcpjError("nothing to build: ingest a data drop first (`hcpj ingest DIR`)")
        with eng.transaction():
            ids = resolve_exact(eng)
            events = build_events(eng)
            profiles = build_profiles(eng)
            return BuildSummary(
                records=eng.count(ids), hcps=eng.count(profiles), events=eng.count(events)
            )


# --------------------------------------------------------------------- export
EXPORT_KINDS = ("identities", "profiles", "quarantine", "quality")
_QUARANTINE_COLUMNS = ("file", "line", "column", "value", "reason", "table")


def export(ws: Workspace, kind: str, out: Path) -> int:
    """Write one output of CONTRACT section 4 to ``out`` (.csv or .parquet)."""
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise HcpjError(f"--out {out}: use a .csv or .parquet file name")
    if kind not in EXPORT_KINDS:
        raise HcpjError(f"unknown export kind '{kind}'; available: {', '.join(EXPORT_KINDS)}")
    with warehouse(ws) as eng:
        if kind == "quality":
            import ibis

            from hcpjourney.quality import quality_report

            return eng.export(ibis.memtable(quality_report(eng, ws).to_long()), out)
        if kind == "quarantine":
            if not eng.has_table("quarantine"):
                raise HcpjError("nothing ingested yet: run `hcpj ingest DIR` first")
            q = eng.table("quarantine")
            expr = q.select(*_QUARANTINE_COLUMNS).order_by(["file", "line", "column"])
            return eng.export(expr, out)
        if not eng.has_table(kind):
            raise HcpjError(f"no {kind} yet: run `hcpj build` first")
        t = eng.table(kind)
        order = {"identities": ["hcp_id", "record_id"], "profiles": ["hcp_id"]}[kind]
        return eng.export(t.order_by(order), out)


# ----------------------------------------------------------------------- demo
DEMO_HCPS = 2000
DEMO_SEED = 7


@dataclass
class DemoSummary:
    workspace: Path
    ingest: list[FileResult]
    build: BuildSummary
    channels: list[tuple[str, int]]


def demo(root: Path, *, n_hcps: int = DEMO_HCPS, seed: int = DEMO_SEED) -> DemoSummary:
    """Simulate a cardiology brand, ingest it and build it in workspace ``root``."""
    from hcpjourney.simulate import simulate

    ws = init_workspace(root)
    drop = ws.root / "drop"
    simulate(n_hcps, drop, seed=seed)
    results, _ = ingest(ws, [drop])
    summary = build(ws)
    with warehouse(ws, read_only=True) as eng:
        ev = eng.table("events")
        top = eng.to_pyarrow(
            ev.group_by("channel").aggregate(n=ev.count()).order_by(ibis_desc("n")).limit(6)
        ).to_pylist()
    return DemoSummary(ws.root, results, summary, [(r["channel"], r["n"]) for r in top])


def ibis_desc(col: str) -> object:
    import ibis

    return ibis.desc(col)
