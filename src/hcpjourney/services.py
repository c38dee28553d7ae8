"""Use cases shared by the CLI and the API. Thin: each opens the workspace and calls a module."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hcpjourney import engine as engines
from hcpjourney.config import Workspace
from hcpjourney.errors import HcpjError
from hcpjourney.ingest.loader import FileResult, Loader, Progress, Source, discover

INGEST_FORMATS = ("contract", "open-payments")


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
        return discover(paths)
    if fmt == "open-payments":
        from hcpjourney.ingest.open_payments import open_payments_sources

        out: list[Source] = []
        for p in paths:
            out.extend(open_payments_sources(Path(p)))
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
