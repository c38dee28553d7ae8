"""The `hcpj` command line. Thin: parses options, calls services, prints results."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hcpjourney import services
from hcpjourney.config import Workspace
from hcpjourney.errors import HcpjError
from hcpjourney.ingest.loader import FileResult, Source

app = typer.Typer(
    name="hcpj",
    help="hcpjourney: HCP journey intelligence from your CRM, web, events, payments and surveys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

WorkspaceOpt = Annotated[
    Path, typer.Option("--workspace", "-w", help="Workspace folder (default: current folder).")
]


def _ws(path: Path) -> Workspace:
    return Workspace.open(path)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
    engine: Annotated[str, typer.Option(help="Warehouse engine: duckdb or spark.")] = "duckdb",
    app_db: Annotated[
        str | None, typer.Option("--app-db", help="SQLAlchemy URL of the app database.")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Create a workspace: hcpj.toml, an embedded warehouse and app database."""
    ws = services.init_workspace(directory, engine=engine, app_db=app_db)
    console.print(f"workspace ready in {ws.root}")


def _progress_factory(progress: Progress) -> object:
    def make(src: Source) -> object:
        if src.path is None:
            return None
        size = src.path.stat().st_size
        if size < (64 << 20):
            return None
        task = progress.add_task(f"{src.file}", total=size)

        def update(fraction: float) -> None:
            progress.update(task, completed=int(fraction * size))

        return update

    return make


def print_results(results: list[FileResult], ignored: list[str]) -> None:
    table = Table(title="ingest")
    for col in ("file", "table", "rows", "loaded", "duplicates skipped", "quarantined", "status"):
        table.add_column(col, justify="right" if col not in ("file", "table", "status") else "left")
    for r in results:
        table.add_row(
            r.file, r.table, f"{r.rows:,}", f"{r.loaded:,}", f"{r.duplicates:,}",
            f"{r.quarantined:,}", r.status if not r.error else f"failed: {r.error}",
        )
    console.print(table)
    if ignored:
        console.print(f"passed over (not contract files): {', '.join(ignored)}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Data drop folders or files.")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="contract (default), open-payments, xes or eventlog "
                     "(a CSV or Parquet table of events)."),
    ] = "contract",
    case: Annotated[
        str | None, typer.Option(help="Event logs: the case column (default case:concept:name).")
    ] = None,
    activity: Annotated[
        str | None, typer.Option(help="Event logs: the activity column (default concept:name).")
    ] = None,
    timestamp: Annotated[
        str | None, typer.Option(help="Event logs: the timestamp column (default time:timestamp).")
    ] = None,
    timestamp_format: Annotated[
        str | None, typer.Option(help="Event logs: strptime format of the timestamps.")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Load a data drop; prints rows loaded and quarantined per file."""
    ws = _ws(workspace)
    options = {"case": case, "activity": activity, "timestamp": timestamp,
               "timestamp_format": timestamp_format}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as progress:
        results, ignored = services.ingest(
            ws, paths, fmt=fmt, progress=_progress_factory(progress),  # type: ignore[arg-type]
            options=options,
        )
    print_results(results, ignored)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise HcpjError(f"{failed[0].file}: {failed[0].error}" + (
            f" (and {len(failed) - 1} more failed file(s))" if len(failed) > 1 else ""
        ))


@app.command()
def build(
    journey: Annotated[
        Path | None,
        typer.Option("--journey", help="journey.yaml to measure (saved as the map's next version); "
                     "default: the last saved map."),
    ] = None,
    segments: Annotated[
        int | None,
        typer.Option("--segments", min=2, help="Number of segments (default: chosen from the data)."),
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Identity resolution, 360 profiles, the measured journey (stages, funnel, paths,
    attribution) and segments with personas."""
    ws = _ws(workspace)
    with console.status("building"):
        s = services.build(ws, journey=journey, n_segments=segments)
    console.print(f"built {s.hcps:,} HCPs from {s.records:,} records; {s.events:,} events")
    if s.journey is not None:
        print_funnel(s.journey)
    else:
        console.print("no journey map yet: measure one with `hcpj build --journey journey.yaml`")
    if s.segments is not None:
        print_segments(s.segments)


def print_segments(seg: services.SegmentSummary) -> None:
    table = Table(title=f"segments: {seg.n_segments} ({seg.mixed_hcps:,} HCPs are mixtures)")
    for col in ("segment", "HCPs (most likely)", "persona"):
        table.add_column(col)
    for i, label in enumerate(seg.labels):
        name = seg.personas[i] if i < len(seg.personas) else ""
        table.add_row(label, f"{seg.primary.get(label, 0):,}", name)
    console.print(table)


def print_funnel(j: services.JourneySummary) -> None:
    table = Table(title=f"funnel: {j.map_name}")
    for col in ("stage", "HCPs", "conversion", "median days"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in j.funnel:
        conv = r["conversion_from_previous"]
        days = r["median_days_from_previous"]
        table.add_row(
            str(r["stage"]), f"{r['hcps']:,}",
            "" if conv is None else f"{float(conv):.1%}",  # type: ignore[arg-type]
            "" if days is None else f"{float(days):.1f}",  # type: ignore[arg-type]
        )
    console.print(table)


@app.command()
def export(
    kind: Annotated[str, typer.Argument(help=", ".join(services.EXPORT_KINDS) + ".")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .csv or .parquet.")],
    activity: Annotated[
        str | None,
        typer.Option(help="transitions/variants: events column(s) naming the activity, e.g. "
                     "topic (default channel:action)."),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(help="funnel: one funnel per specialty, profession, region, account, source, "
                     "segment or persona."),
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Write one of the contract's outputs to a file."""
    n = services.export(_ws(workspace), kind, out, activity=activity, by=by)
    console.print(f"wrote {n:,} rows to {out}")


@app.command()
def quality(workspace: WorkspaceOpt = Path(".")) -> None:
    """Data-quality report: completeness, NPI coverage, quarantine, staleness, gaps, duplicates."""
    from hcpjourney.quality import quality_report

    ws = _ws(workspace)
    with services.warehouse(ws, read_only=True) as eng:
        quality_report(eng, ws).render(console)


@app.command()
def simulate(
    hcps: Annotated[int, typer.Option("--hcps", min=1, help="Number of simulated people.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the data drop to.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same drop.")] = 0,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Write a simulated data drop (contract files + journey.yaml; truth in OUT/_truth)."""
    from hcpjourney.simulate import simulate as run

    with Progress(
        TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} HCPs"),
        TimeElapsedColumn(), console=err, transient=True,
    ) as progress:
        task = progress.add_task("simulate", total=hcps)

        def step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = run(hcps, out, seed=seed, progress=step)
    console.print(f"wrote a simulated drop of {summary.n_records:,} HCP records to {out}")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Workspace folder.")] = Path("hcpj-demo"),
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after the summary.")] = False,
    port: Annotated[int, typer.Option(help="Port for the web app.")] = 8000,
    hcps: Annotated[int, typer.Option(help="Simulated HCPs.")] = services.DEMO_HCPS,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """A simulated cardiology brand end to end: simulate, ingest, build, summarise."""
    with console.status("simulating, ingesting and building the demo brand"):
        s = services.demo(directory, n_hcps=hcps)
    print_results(s.ingest, [])
    console.print(
        f"[bold]demo workspace[/bold] {s.workspace}: {s.build.records:,} HCP records resolved to "
        f"{s.build.hcps:,} HCPs, {s.build.events:,} events"
    )
    console.print("top channels: " + ", ".join(f"{c} {n:,}" for c, n in s.channels))
    if s.build.journey is not None:
        print_funnel(s.build.journey)
    if s.build.segments is not None:
        print_segments(s.build.segments)
    console.print(
        f"next: hcpj export funnel --out funnel.csv --workspace {s.workspace}; "
        f"hcpj personas --out personas.html --workspace {s.workspace}; "
        f"hcpj recommend --as-of 2025-12-01 --out nba.csv --workspace {s.workspace}"
    )


review_app = typer.Typer(
    help="The identity review queue: uncertain record pairs and data-steward decisions.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")


_SHORT = {"first_name": "first", "middle_initial": "middle", "last_name": "last",
          "location": "place", "organization": "org", "credential": "cred"}


@review_app.command("list")
def review_list(
    all_pairs: Annotated[
        bool, typer.Option("--all", help="Include pairs already decided.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many pairs.")] = 50,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the whole queue to .csv or .parquet.")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Pairs whose match probability is in the review band, with per-field evidence."""
    ws = _ws(workspace)
    items = services.review_list(ws, include_decided=all_pairs)
    if out is not None:
        n = _write_review(items, out)
        console.print(f"wrote {n:,} pairs to {out}")
    table = Table(title=f"identity review: {len(items):,} pair(s)",
                  caption="evidence: comparison level per field; missing fields left out")
    table.add_column("pair", no_wrap=True)
    table.add_column("records (source)", no_wrap=True)
    table.add_column("p", justify="right")
    table.add_column("linked")
    table.add_column("evidence")
    for it in items[:limit]:
        evidence = " ".join(f"{_SHORT.get(k, k)}={v}" for k, v in it.evidence.items()
                            if v != "missing")
        linked = "yes" if it.linked else "no"
        if it.decision:
            linked += f"\n{it.decision}"
        table.add_row(
            it.pair_id,
            f"{it.record_id_l} ({it.source_l or '?'})\n{it.record_id_r} ({it.source_r or '?'})",
            f"{it.probability:.3f}", linked, evidence,
        )
    console.print(table)
    if len(items) > limit:
        console.print(f"{len(items) - limit:,} more; use --limit or --out to see them all")
    console.print("decide with: hcpj review decide PAIR match|distinct [--note TEXT]")


def _write_review(items: list[services.ReviewItem], out: Path) -> int:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if out.suffix.lower() not in (".csv", ".parquet"):
        raise HcpjError(f"--out {out}: use a .csv or .parquet file name")
    rows = [
        {"pair_id": it.pair_id, "record_id_l": it.record_id_l, "source_l": it.source_l,
         "record_id_r": it.record_id_r, "source_r": it.source_r,
         "match_probability": it.probability, "linked": it.linked, "decision": it.decision,
         **{f"evidence_{k}": v for k, v in it.evidence.items()}}
        for it in items
    ]
    data = pa.Table.from_pylist(rows) if rows else pa.table({"pair_id": pa.array([], pa.string())})
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        pq.write_table(data, str(out))
    else:
        pacsv.write_csv(data, str(out))
    return data.num_rows


@review_app.command("decide")
def review_decide(
    pair: Annotated[str, typer.Argument(help="A pair id from `review list`, or RECORD_A,RECORD_B.")],
    decision: Annotated[str, typer.Argument(help="match or distinct.")],
    note: Annotated[str | None, typer.Option(help="Why (kept with the decision).")] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who decides (default: the login name).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Decide that a pair is one HCP (match) or two (distinct); applied at the next build."""
    d = services.review_decide(_ws(workspace), pair, decision, note=note, actor=by)
    console.print(
        f"recorded {d.decision} for {d.pair_id} ({d.record_id_l}, {d.record_id_r}) by {d.actor}; "
        "it takes effect at the next `hcpj build`"
    )


@app.command()
def personas(
    out: Annotated[Path, typer.Option("--out", help="Output file: .md or .html.")],
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Write the persona cards (one per segment, made from data) as Markdown or HTML."""
    n = services.personas(_ws(workspace), out)
    console.print(f"wrote {n} persona cards to {out}")


@app.command()
def recommend(
    as_of: Annotated[str, typer.Option("--as-of", help="First day of the week to plan (YYYY-MM-DD).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the recommendations (.csv or .parquet).")
    ] = None,
    capacity: Annotated[
        str | None,
        typer.Option(help="Weekly limits for a global allocation, e.g. "
                     "rep_visit=200,msl_visit=20,email=5000."),
    ] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Ranked actions per HCP.")] = None,
    exploration: Annotated[
        str | None, typer.Option(help="none, epsilon or thompson (default from hcpj.toml).")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Next best actions per HCP for the week starting --as-of: eligible by construction
    (consent, MLR approval and expiry, team, quiet periods, contact caps), ranked and explained."""
    ws = _ws(workspace)
    with console.status("fitting response models and ranking eligible actions"):
        s = services.recommend(ws, as_of, out=out, capacity=capacity, top_k=top_k,
                               exploration=exploration)
    where = f" to {s.out}" if s.out else ""
    console.print(f"recommended {s.rows:,} actions for {s.hcps:,} HCPs (week of "
                  f"{s.as_of:%Y-%m-%d}){where}")
    for note in s.notes:
        console.print(f"note: {note}")


@app.command("evaluate-policy")
def evaluate_policy(
    logs: Annotated[
        Path | None,
        typer.Option(help="Logged decisions (.csv or .parquet): action, reward, propensity ... "
                     "Without it, the NBA policy is evaluated on the workspace's own history."),
    ] = None,
    policy: Annotated[
        str, typer.Option(help="With --logs: uniform, logged or column (target_propensity).")
    ] = "uniform",
    policy_file: Annotated[
        Path | None,
        typer.Option(help="With --logs: a table of context_id, action, probability to evaluate."),
    ] = None,
    n_actions: Annotated[int | None, typer.Option(help="Number of actions (uniform).")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for intervals.")] = 0,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Without --logs: end of the holdout period.")
    ] = None,
    holdout_days: Annotated[int, typer.Option(min=1, help="Without --logs: holdout length.")] = 28,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the estimates (.csv).")] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Off-policy evaluation: IPW, self-normalised IPW and doubly robust estimates of a
    policy's value on logged data, with 95% confidence intervals."""
    if logs is not None:
        results = [services.evaluate_policy(logs, policy, n_actions=n_actions,
                                            bootstrap=bootstrap, policy_file=policy_file)]
    else:
        if as_of is None:
            raise HcpjError("give --logs FILE, or --as-of DATE to evaluate on the workspace's history")
        results = list(services.evaluate_history(_ws(workspace), as_of,
                                                 holdout_days=holdout_days).values())
    rows = [r for res in results for r in res.rows()]
    table = Table(title="off-policy evaluation (95% intervals)")
    for col in ("policy", "estimator", "value", "interval", "n", "logged value"):
        table.add_column(col, justify="left" if col in ("policy", "estimator") else "right")
    for r in rows:
        table.add_row(str(r["policy"]), str(r["estimator"]), f"{r['value']:.5f}",
                      f"[{r['ci_low']:.5f}, {r['ci_high']:.5f}]", f"{r['n']:,}",
                      f"{r['logged_value']:.5f}")
    console.print(table)
    for res in results:
        for note in res.notes:
            console.print(f"note: {note}")
    if out is not None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        out.parent.mkdir(parents=True, exist_ok=True)
        pacsv.write_csv(pa.Table.from_pylist(rows), str(out))
        console.print(f"wrote {len(rows)} estimates to {out}")


feedback_app = typer.Typer(help="Reps accept or skip recommendations; skips feed back as data.",
                           no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="The week of the recommendation answered (default: now)."),
]


def _feedback(decision: str, hcp_id: str, action: str, content: str | None, reason: str | None,
              note: str | None, by: str | None, as_of: str | None, workspace: Path) -> None:
    r = services.nba_feedback(_ws(workspace), hcp_id, action, decision, reason=reason,
                              content_id=content, note=note, actor=by, as_of=as_of)
    console.print(f"recorded {r.decision} of {r.action} for {r.hcp_id} by {r.actor}")


@feedback_app.command("accept")
def feedback_accept(
    hcp_id: Annotated[str, typer.Argument(help="The HCP.")],
    action: Annotated[str, typer.Argument(help="The recommended action.")],
    content: Annotated[str | None, typer.Option(help="Its content_id.")] = None,
    note: Annotated[str | None, typer.Option(help="Free text.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who (default: the login name).")] = None,
    as_of: AsOfOpt = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Accept a recommendation."""
    _feedback("accept", hcp_id, action, content, None, note, by, as_of, workspace)


@feedback_app.command("skip")
def feedback_skip(
    hcp_id: Annotated[str, typer.Argument(help="The HCP.")],
    action: Annotated[str, typer.Argument(help="The recommended action.")],
    reason: Annotated[str, typer.Option(help="not_relevant, hcp_declined, wrong_timing, "
                                        "hcp_unavailable, already_planned, compliance_concern "
                                        "or other.")],
    content: Annotated[str | None, typer.Option(help="Its content_id.")] = None,
    note: Annotated[str | None, typer.Option(help="Free text.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who (default: the login name).")] = None,
    as_of: AsOfOpt = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Skip a recommendation, with a reason (it is not proposed again for a while)."""
    _feedback("skip", hcp_id, action, content, reason, note, by, as_of, workspace)


journey_app = typer.Typer(help="Journey maps: saved versions.", no_args_is_help=True)
app.add_typer(journey_app, name="journey")


@journey_app.command("list")
def journey_list(workspace: WorkspaceOpt = Path(".")) -> None:
    """Saved journey maps with their latest version."""
    from hcpjourney.journey import store

    maps = store.list_maps(_ws(workspace).app_db_url)
    table = Table(title=f"journey maps: {len(maps)}")
    for col in ("map", "name", "type", "version", "updated", "by"):
        table.add_column(col)
    for m in maps:
        table.add_row(m.slug, m.name, m.map_type, str(m.latest_version),
                      m.updated_at.strftime("%Y-%m-%d %H:%M"), m.updated_by)
    console.print(table)


@journey_app.command("show")
def journey_show(
    name: Annotated[str, typer.Argument(help="Map name or slug from `hcpj journey list`.")],
    version: Annotated[int | None, typer.Option(help="A version (default: the latest).")] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Print a saved map's YAML (of one version)."""
    from hcpjourney.journey import store

    m = store.get_map(_ws(workspace).app_db_url, name, version)
    sys.stdout.write(m.yaml if m.yaml.endswith("\n") else m.yaml + "\n")


def main() -> None:
    """Entry point: one-line errors, non-zero exit, no tracebacks for user errors."""
    try:
        app(standalone_mode=False)
    except HcpjError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "show"):
            exc.show()
            sys.exit(code)
        if os.environ.get("HCPJ_DEBUG"):
            raise
        err.print(f"error: {type(exc).__name__}: {exc}", markup=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
