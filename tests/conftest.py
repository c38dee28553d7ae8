"""Shared fixtures: workspaces in tmp_path, data drops written on the fly, warehouse reads."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hcpjourney import engine as engines
from hcpjourney import services
from hcpjourney.config import CONFIG_FILE, Workspace
from hcpjourney.contract import schemas
from hcpjourney.contract.npi import make_npi
from hcpjourney.ingest.loader import LOADS, QUARANTINE, FileResult

# Columns that differ between two otherwise identical loads (ids and clocks).
VOLATILE = frozenset({schemas.LOAD_ID, "loaded_at", "quarantined_at"})
WAREHOUSE_TABLES = (*(t.name for t in schemas.TABLES), QUARANTINE, LOADS)

NPI_1 = make_npi(123456789)
NPI_2 = make_npi(234567890)


def sample_drop() -> dict[str, tuple[list[str], list[list[str]]]]:
    """A small valid drop: (header, rows) per contract table. Rows refer to each other."""
    return {
        "hcps": (
            ["record_id", "source", "npi", "first_name", "last_name", "credential", "profession",
             "specialty", "city", "state", "country", "email", "decile", "is_kol", "updated_at"],
            [
                ["crm:1", "crm", NPI_1, "Ada", "Smith", "MD", "physician", "Cardiology",
                 "Boston", "MA", "US", "ada@example.org", "3", "true", "2024-01-05T09:00:00Z"],
                ["crm:2", "crm", NPI_2, "Ben", "Jones", "NP", "nurse_practitioner",
                 "Family Medicine", "Austin", "TX", "US", "", "7", "no", "2024-01-06 09:00:00"],
                ["web:3", "web", "", "", "Brown", "", "", "", "", "", "", "", "", "", ""],
            ],
        ),
        "content": (
            ["content_id", "title", "format", "therapeutic_area", "product", "audience",
             "language", "mlr_status", "length_minutes", "approved_at", "expires_at"],
            [
                ["c1", "Heart failure guide", "article", "cardiology", "cardiozen", "hcp", "en",
                 "approved", "5", "2023-12-01T00:00:00Z", "2099-12-31T00:00:00Z"],
                ["c2", "Dosing video", "video", "cardiology", "cardiozen", "hcp", "en",
                 "in_review", "12.5", "", ""],
                ["c3", "Patient podcast", "podcast", "cardiology", "", "patient", "en", "draft",
                 "", "", ""],
            ],
        ),
        "interactions": (
            ["event_id", "record_id", "ts", "channel", "action", "direction", "team", "owner_id",
             "content_id", "campaign_id", "duration_s", "value_usd", "topic"],
            [
                ["e1", "crm:1", "2024-02-01T10:00:00Z", "email", "opened", "outbound",
                 "commercial", "rep1", "c1", "camp1", "30", "", "heart failure"],
                ["e2", "crm:2", "2024-02-02T11:00:00+02:00", "web", "visited", "inbound", "", "",
                 "", "", "120.5", "", ""],
                ["e3", "web:3", "2024-02-03 12:00:00", "f2f_visit", "completed", "outbound",
                 "medical", "msl1", "", "", "900", "45.10", "lipids, diet"],
            ],
        ),
        "consents": (
            ["record_id", "channel", "status", "ts", "purpose", "source"],
            [
                ["crm:1", "email", "opt_in", "2024-01-01T00:00:00Z", "promotional", "crm"],
                ["crm:2", "phone", "opt_out", "2024-01-02T00:00:00Z", "medical", "crm"],
                ["web:3", "email", "opt_in", "2024-01-03T00:00:00Z", "research", "web"],
            ],
        ),
        "outcomes": (
            ["record_id", "product", "period", "nrx", "trx"],
            [
                ["crm:1", "cardiozen", "2024-01", "2", "5"],
                ["crm:2", "cardiozen", "2024-02", "0", "1"],
                ["web:3", "cardiozen", "2024-03", "1", "1.5"],
            ],
        ),
        "feedback": (
            ["response_id", "record_id", "ts", "instrument", "question", "score", "comment",
             "event_id", "dimension"],
            [
                ["r1", "crm:1", "2024-02-05T10:00:00Z", "nps", "How likely, 0-10?", "9",
                 'Useful, and "concise"', "e1", "relevant"],
                ["r2", "crm:2", "2024-02-06T10:00:00Z", "csat", "Satisfied?", "4", "", "e2",
                 "consumable"],
                ["r3", "", "2024-02-07T10:00:00Z", "nps", "How likely, 0-10?", "7", "", "", ""],
            ],
        ),
        "relationships": (
            ["src_record_id", "dst_record_id", "kind", "weight", "ts"],
            [
                ["crm:1", "crm:2", "coauthor", "2", "2023-05-01T00:00:00Z"],
                ["crm:2", "web:3", "referral", "", ""],
                ["web:3", "crm:1", "", "1", ""],
            ],
        ),
    }


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 text: quoted only where needed, LF line ends."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


@dataclass
class Drop:
    """A data-drop folder that tests write files into."""

    path: Path

    def csv(self, name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
        return self.text(name, csv_text(header, rows))

    def text(self, name: str, text: str, encoding: str = "utf-8") -> Path:
        return self.bytes(name, text.encode(encoding))

    def bytes(self, name: str, data: bytes) -> Path:
        p = self.path / name
        p.write_bytes(data)
        return p

    def parquet(self, name: str, table: pa.Table, **kwargs: Any) -> Path:
        p = self.path / name
        pq.write_table(table, str(p), **kwargs)
        return p

    def sample(self, *tables: str) -> Drop:
        """Write the sample drop's files (all tables unless named) as NAME.csv."""
        for name, (header, rows) in sample_drop().items():
            if not tables or name in tables:
                self.csv(f"{name}.csv", header, rows)
        return self


@dataclass
class Warehouse:
    """One workspace, with helpers to ingest into it and read its warehouse."""

    ws: Workspace

    def ingest(self, *paths: Path | str) -> dict[str, FileResult]:
        results, _ = services.ingest(self.ws, list(paths))
        return {r.file: r for r in results}

    @contextmanager
    def engine(self) -> Iterator[engines.Engine]:
        eng = engines.connect(self.ws)
        try:
            yield eng
        finally:
            eng.close()

    def rows(self, table: str, *, drop: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """All rows of ``table`` in stored order (no ORDER BY)."""
        with self.engine() as eng:
            if not eng.has_table(table):
                return []
            data = eng.to_pyarrow(eng.table(table)).to_pylist()
        return [{k: v for k, v in r.items() if k not in drop} for r in data]

    def quarantine(self, file: str | None = None) -> list[tuple[str, int, str, str | None, str]]:
        """(file, line, column, value, reason) rows, sorted by file, line and column."""
        out = [
            (r["file"], r["line"], r["column"], r["value"], r["reason"])
            for r in self.rows(QUARANTINE)
            if file is None or r["file"] == file
        ]
        return sorted(out, key=lambda r: (r[0], r[1], r[2], r[4]))

    def snapshot(self, *, stable: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Every warehouse table's rows; quarantine and loads sorted (their order is free).

        ``stable`` leaves out load ids and clocks, to compare two workspaces.
        """
        drop = VOLATILE if stable else frozenset()
        snap = {name: self.rows(name, drop=drop) for name in WAREHOUSE_TABLES}
        for name in (QUARANTINE, LOADS):
            snap[name] = sorted(snap[name], key=repr)
        return snap


def _init_workspace(
    path: Path, *, channels: Sequence[str] = (), actions: Sequence[str] = ()
) -> Workspace:
    Workspace.init(path)
    return _declare(path, channels, actions)


def _declare(path: Path, channels: Sequence[str], actions: Sequence[str]) -> Workspace:
    """Open the workspace at ``path`` after declaring extra channels and actions."""
    if channels or actions:
        cfg = path / CONFIG_FILE
        text = cfg.read_text(encoding="utf-8")
        text = text.replace("channels = []", "channels = " + _toml_list(channels))
        text = text.replace("actions = []", "actions = " + _toml_list(actions))
        cfg.write_text(text, encoding="utf-8")
    return Workspace.open(path)


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{x}"' for x in items) + "]"


@dataclass
class Factory:
    """Makes workspaces and drop folders under one root folder."""

    root: Path

    def workspace(
        self, name: str = "ws", *, channels: Sequence[str] = (), actions: Sequence[str] = ()
    ) -> Warehouse:
        return Warehouse(_init_workspace(self.root / name, channels=channels, actions=actions))

    def clone(
        self,
        source: Warehouse,
        name: str,
        *,
        channels: Sequence[str] = (),
        actions: Sequence[str] = (),
    ) -> Warehouse:
        """A copy of another (closed) workspace, cheaper than ingesting the same files again."""
        shutil.copytree(source.ws.root, self.root / name)
        return Warehouse(_declare(self.root / name, channels, actions))

    def drop(self, name: str = "drop") -> Drop:
        p = self.root / name
        p.mkdir(parents=True, exist_ok=True)
        return Drop(p)

    @staticmethod
    def sample() -> dict[str, tuple[list[str], list[list[str]]]]:
        return sample_drop()


@pytest.fixture
def factory(tmp_path: Path) -> Factory:
    """Workspaces and drops under this test's tmp_path."""
    return Factory(tmp_path)


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory: pytest.TempPathFactory) -> Factory:
    """Workspaces and drops shared by the tests of one module."""
    return Factory(tmp_path_factory.mktemp("module"))


@pytest.fixture
def wh(factory: Factory) -> Warehouse:
    """A fresh workspace in tmp_path/ws."""
    return factory.workspace()


@pytest.fixture
def workspace(wh: Warehouse) -> Workspace:
    return wh.ws


@pytest.fixture
def sample() -> dict[str, tuple[list[str], list[list[str]]]]:
    """The sample drop as (header, rows) per table; a fresh copy per test."""
    return sample_drop()


# ------------------------------------------------------------------ app databases
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (dropped afterwards); its URL."""
    import uuid

    import sqlalchemy as sa

    name = f"hcpj_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def app_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An app-database URL: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    with postgres_database() as url:
        yield url
