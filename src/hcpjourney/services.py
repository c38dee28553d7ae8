"""Use cases shared by the CLI and the API. Thin: each opens the workspace and calls a module."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir

from hcpjourney import engine as engines
from hcpjourney.config import Workspace
from hcpjourney.errors import HcpjError
from hcpjourney.ingest.loader import FileResult, Loader, Progress, Source, discover

if TYPE_CHECKING:
    import pyarrow as pa

    from hcpjourney import nba
    from hcpjourney.identity.resolve import Decision, ResolveSummary, Thresholds
    from hcpjourney.identity.review import DecisionRecord, ReviewItem
    from hcpjourney.journey.model import JourneyMap
    from hcpjourney.journey.stages import JourneySummary
    from hcpjourney.segment.build import SegmentSummary

INGEST_FORMATS = ("contract", "open-payments", "xes", "eventlog")


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


def sources_for(
    paths: Sequence[str | Path],
    fmt: str = "contract",
    options: Mapping[str, str | None] | None = None,
) -> tuple[list[Source], list[str]]:
    """The sources an ingest of ``paths`` in format ``fmt`` loads, and files passed over.

    ``options`` of the event-log formats: case, activity, timestamp (column names)
    and timestamp_format.
    """
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
    if fmt in ("xes", "eventlog"):
        from hcpjourney.ingest.eventlog import read_eventlog

        given = {k: v for k, v in (options or {}).items() if v}
        logs: list[Source] = []
        for p in paths:
            outputs = read_eventlog(Path(p), fmt=fmt, **given)
            logs.extend(Source(table=o.table, file=o.file, data=o.data) for o in outputs)
        logs.sort(key=lambda s: s.table != "hcps")
        return logs, []
    raise HcpjError(f"unknown --format '{fmt}'; use one of {', '.join(INGEST_FORMATS)}")


def ingest(
    ws: Workspace,
    paths: Sequence[str | Path],
    *,
    fmt: str = "contract",
    progress: Callable[[Source], Progress | None] | None = None,
    options: Mapping[str, str | None] | None = None,
) -> tuple[list[FileResult], list[str]]:
    sources, ignored = sources_for(paths, fmt, options)
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
    journey: JourneySummary | None = None
    segments: SegmentSummary | None = None


def build(
    ws: Workspace, *, journey: Path | None = None, actor: str | None = None,
    n_segments: int | None = None,
) -> BuildSummary:
    """Identity resolution, resolved events, 360 profiles, the measured journey (stages,
    funnel, paths, attribution) and segments with personas.

    ``journey``: a journey.yaml to measure, saved as the map's next version in the
    app database; without it the most recently saved map is measured, if any.
    ``n_segments``: fix the number of segments (default: chosen by BIC and stability).
    """
    from hcpjourney.identity.golden import source_trust
    from hcpjourney.identity.profiles import build_events, build_profiles

    trust = source_trust(ws)  # a bad setting fails before any work
    thresholds = identity_thresholds(ws)
    overrides = review_overrides(ws)
    jmap = journey_map(ws, journey, actor=actor)
    with warehouse(ws) as eng:
        if not eng.has_table("hcps") or eng.count(eng.table("hcps")) == 0:
            raise HcpjError("nothing to build: ingest a data drop first (`hcpj ingest DIR`)")
        with eng.transaction():
            resolve_identities(eng, thresholds, overrides)
            ids = eng.table("identities")
            events = build_events(eng)
            profiles = build_profiles(eng, trust=trust)
            summary = BuildSummary(
                records=eng.count(ids), hcps=eng.count(profiles), events=eng.count(events)
            )
            if jmap is not None:
                from hcpjourney.journey.stages import build_journey

                summary.journey = build_journey(eng, jmap)
            from hcpjourney.journey.attribution import build_attribution
            from hcpjourney.journey.paths import build_transitions
            from hcpjourney.segment import build_segments

            if summary.events:  # paths, attribution and behaviour need touchpoints
                product = jmap.product if jmap is not None else None
                build_transitions(eng)
                build_attribution(eng, product)
                summary.segments = build_segments(eng, n_segments=n_segments, product=product)
            return summary


def journey_map(ws: Workspace, path: Path | None = None, *, actor: str | None = None
                ) -> JourneyMap | None:
    """The map a build measures: ``path`` (saved as a new version when it changed), else
    the most recently saved map, else None."""
    from hcpjourney.journey import store
    from hcpjourney.journey.model import JourneyMap

    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise HcpjError(f"--journey {path}: cannot be read ({exc.strerror})") from None
        jmap = JourneyMap.from_yaml(text, source=str(path))
        store.save_map(ws.app_db_url, text, actor=actor or _user())
        return jmap
    maps = store.list_maps(ws.app_db_url)
    if not maps:
        return None
    latest = max(maps, key=lambda m: m.updated_at)
    return store.get_map(ws.app_db_url, latest.slug).map


def _user() -> str:
    import getpass

    return getpass.getuser()


# --------------------------------------------------------------------- export
EXPORT_KINDS = (
    "identities", "profiles", "golden", "golden_lineage", "quarantine", "quality", "stages",
    "funnel", "stage_entries", "transitions", "variants", "attribution", "recommendations",
    "segments", "segment_assignments", "personas", "segment_grid", "hcp_potential",
)
# what makes a kind that is missing, when it is not a plain `hcpj build`
_JOURNEY = "run `hcpj build --journey journey.yaml` to measure a journey"
_MADE_BY = {"stages": _JOURNEY, "funnel": _JOURNEY, "stage_entries": _JOURNEY,
            "recommendations": "run `hcpj recommend --as-of DATE` first"}
_QUARANTINE_COLUMNS = ("file", "line", "column", "value", "reason", "table")


def export(
    ws: Workspace, kind: str, out: Path, *, activity: str | None = None, by: str | None = None
) -> int:
    """Write one output of CONTRACT section 4 to ``out`` (.csv or .parquet).

    ``activity``: for transitions and variants, the events column(s) that name an
    activity instead of the contract's channel:action (e.g. ``topic``; several
    joined by commas), computed on the fly. ``by``: for the funnel, one funnel
    per value of a breakdown (specialty, profession, region, account, source,
    segment, persona or a golden column) of the last measured journey.
    """
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise HcpjError(f"--out {out}: use a .csv or .parquet file name")
    if kind not in EXPORT_KINDS:
        raise HcpjError(f"unknown export kind '{kind}'; available: {', '.join(EXPORT_KINDS)}")
    if activity is not None and kind not in ("transitions", "variants"):
        raise HcpjError("--activity applies to transitions and variants only")
    if by is not None and kind != "funnel":
        raise HcpjError("--by applies to the funnel only")
    jmap = journey_map(ws) if by is not None else None
    with warehouse(ws) as eng:
        if activity is not None:
            return eng.export(_activity_paths(eng, kind, activity), out)
        if by is not None:
            from hcpjourney.journey.stages import funnel_by

            if jmap is None or not eng.has_table("stage_entries"):
                raise HcpjError("no journey measured yet: run `hcpj build --journey journey.yaml`")
            f = funnel_by(eng, jmap, by, entries=eng.table("stage_entries"))
            return eng.export(f.order_by([by, "stage_index"]), out)
        if kind == "quality":
            from hcpjourney.quality import quality_report

            return eng.export(ibis.memtable(quality_report(eng, ws).to_long()), out)
        if kind == "quarantine":
            if not eng.has_table("quarantine"):
                raise HcpjError("nothing ingested yet: run `hcpj ingest DIR` first")
            q = eng.table("quarantine")
            expr = q.select(*_QUARANTINE_COLUMNS).order_by(["file", "line", "column"])
            return eng.export(expr, out)
        if not eng.has_table(kind):
            raise HcpjError(f"no {kind} yet: {_MADE_BY.get(kind, 'run `hcpj build` first')}")
        t = eng.table(kind)
        order = {
            "identities": ["hcp_id", "record_id"],
            "profiles": ["hcp_id"],
            "golden": ["hcp_id"],
            "golden_lineage": ["hcp_id", "field"],
            "stages": ["hcp_id"],
            "funnel": ["stage_index"],
            "stage_entries": ["hcp_id", "stage_index"],
            "transitions": ["from_activity", "to_activity"],
            "variants": ["rank"],
            "attribution": [ibis.desc("share"), "channel"],
            "recommendations": ["hcp_id", "rank"],
            "segments": ["hcp_id", "segment"],
            "segment_assignments": ["hcp_id"],
            "personas": ["segment"],
            "segment_grid": list(t.columns[:2]),
            "hcp_potential": ["hcp_id"],
        }[kind]
        return eng.export(t.order_by(order), out)


def _activity_paths(eng: engines.Engine, kind: str, activity: str) -> ir.Table:
    from hcpjourney.journey import paths

    if not eng.has_table("events"):
        raise HcpjError("no events yet: run `hcpj build` first")
    ev = eng.table("events")
    cols = [c.strip() for c in activity.split(",") if c.strip()]
    unknown = [c for c in cols if c not in ev.columns]
    if not cols or unknown:
        raise HcpjError(
            f"--activity {activity}: not an events column; use one or more of "
            f"{', '.join(c for c in ev.columns if c != 'attributes')}"
        )
    act = cols[0] if len(cols) == 1 else cols
    if kind == "transitions":
        return paths.transitions(ev, activity=act, presorted=True).order_by(
            ["from_activity", "to_activity"])
    v = ibis.memtable(paths.variant_table(ev, activity=act, presorted=True))
    return v.order_by([ibis.desc("count"), "variant"])


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
    summary = build(ws, journey=drop / "journey.yaml", actor="demo")
    with warehouse(ws, read_only=True) as eng:
        ev = eng.table("events")
        top = eng.to_pyarrow(
            ev.group_by("channel").aggregate(n=ev.count()).order_by(ibis.desc("n")).limit(6)
        ).to_pylist()
    return DemoSummary(ws.root, results, summary, [(r["channel"], r["n"]) for r in top])


# ------------------------------------------------------------------- identity
def identity_thresholds(ws: Workspace) -> Thresholds:
    """Match threshold and review band from hcpj.toml [identity]."""
    from hcpjourney.config import CONFIG_FILE
    from hcpjourney.identity.resolve import Thresholds

    section = ws.settings.get("identity", {})
    if not isinstance(section, dict):
        section = {}
    return Thresholds.from_settings(section, where=str(ws.root / CONFIG_FILE))


def review_overrides(ws: Workspace) -> list[Decision]:
    """Data-steward decisions the next build applies (the latest per pair wins)."""
    from hcpjourney.identity.review import model_overrides

    return model_overrides(ws.app_db_url)


def resolve_identities(
    eng: engines.Engine, thresholds: Thresholds, overrides: Sequence[Decision] = ()
) -> ResolveSummary:
    """Probabilistic identity resolution with stable hcp_ids (writes identities and friends)."""
    from hcpjourney.identity.resolve import resolve

    return resolve(eng, thresholds, overrides)


def review_list(
    ws: Workspace, *, include_decided: bool = False, limit: int | None = None
) -> list[ReviewItem]:
    """Pairs in the review band of the latest build, with per-field evidence."""
    from hcpjourney.identity import review

    thresholds = identity_thresholds(ws)
    decided = review.latest_decisions(ws.app_db_url)
    with warehouse(ws, read_only=True) as eng:
        if not eng.has_table("identity_pairs"):
            raise HcpjError("no identity pairs yet: run `hcpj build` first")
        return review.queue(eng, thresholds, decided, include_decided=include_decided,
                            limit=limit)


def review_decide(
    ws: Workspace, pair: str, decision: str, *, note: str | None = None,
    actor: str | None = None,
) -> DecisionRecord:
    """Record a steward's decision on a pair; it overrides the model at the next build."""
    from hcpjourney.identity import review

    decision = decision.strip().lower()
    if decision not in review.DECISIONS:
        raise HcpjError(f"unknown decision '{decision}'; use match or distinct")
    with warehouse(ws, read_only=True) as eng:
        if not eng.has_table("hcps"):
            raise HcpjError("nothing ingested yet: run `hcpj ingest DIR` and `hcpj build` first")
        a, b = review.find_pair(eng, pair)
        if decision == "match" and review.different_npis(eng, a, b):
            raise HcpjError(
                f"records {a} and {b} carry different NPIs and can never be one HCP; "
                "decide distinct, or correct the NPI at the source"
            )
    return review.record_decision(ws.app_db_url, a, b, decision, actor=actor or _user(), note=note)


# ------------------------------------------------------------------------- nba
def recommend(
    ws: Workspace, as_of: str, *, out: Path | None = None, capacity: str | None = None,
    top_k: int | None = None, exploration: str | None = None,
) -> nba.RecommendSummary:
    """Next best actions for the week starting ``as_of`` (writes ``recommendations``)."""
    from hcpjourney import nba

    with warehouse(ws, read_only=True) as eng:
        if not eng.has_table("events"):
            raise HcpjError("nothing built yet: run `hcpj ingest DIR` and `hcpj build` first")
    return nba.recommend_workspace(ws, as_of, out=out, capacity=capacity, top_k=top_k,
                                   exploration=exploration)


def evaluate_policy(
    logs: Path, policy: str = "uniform", *, n_actions: int | None = None, bootstrap: int = 0,
    policy_file: Path | None = None,
) -> nba.PolicyEvaluation:
    """Off-policy estimates (IPW, SNIPW, DR) of ``policy`` on a file of logged decisions."""
    from hcpjourney import nba

    if not logs.exists():
        raise HcpjError(f"--logs {logs}: no such file")
    target: str | pa.Table = policy
    if policy_file is not None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if not policy_file.exists():
            raise HcpjError(f"--policy-file {policy_file}: no such file")
        target = (pq.read_table(str(policy_file)) if policy_file.suffix.lower() == ".parquet"
                  else pacsv.read_csv(str(policy_file)))
    return nba.evaluate_policy(logs, target, n_actions=n_actions, bootstrap=bootstrap)


def evaluate_history(ws: Workspace, as_of: str, *, holdout_days: int = 28
                     ) -> dict[str, nba.PolicyEvaluation]:
    """The NBA policy against uniform and logging policies on the workspace's own holdout."""
    from hcpjourney import nba

    with warehouse(ws, read_only=True) as eng:
        return nba.evaluate_history(eng, ws.settings, as_of, holdout_days=holdout_days)


def nba_feedback(
    ws: Workspace, hcp_id: str, action: str, decision: str, *, reason: str | None = None,
    content_id: str | None = None, note: str | None = None, actor: str | None = None,
    as_of: str | None = None,
) -> nba.FeedbackRecord:
    """A rep accepts or skips a recommendation (of the week ``as_of``, if given); skips
    feed back into the next run."""
    from hcpjourney import nba
    from hcpjourney.nba.recommend import parse_as_of

    week = parse_as_of(as_of) if as_of else None
    return nba.record_feedback(ws.app_db_url, hcp_id, action, decision, actor=actor or _user(),
                               content_id=content_id, reason=reason, note=note, as_of=week)


# -------------------------------------------------------------------- segments
def personas(ws: Workspace, out: Path) -> int:
    """Write the persona cards of the latest build as Markdown (.md) or HTML (.html)."""
    from hcpjourney.segment import cards_html, cards_markdown, persona_cards

    if out.suffix.lower() not in (".md", ".html"):
        raise HcpjError(f"--out {out}: use a .md or .html file name")
    with warehouse(ws, read_only=True) as eng:
        if not eng.has_table("personas"):
            raise HcpjError("no personas yet: run `hcpj build` first")
        cards = persona_cards(eng)
    text = cards_html(cards) if out.suffix.lower() == ".html" else cards_markdown(cards)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return len(cards)
