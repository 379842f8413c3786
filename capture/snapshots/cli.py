"""``partrig dataset snapshot``, ``snapshots`` and ``check-leaks``: snapshots from the shell.

Registered on the ``dataset`` sub-app by :mod:`capture.dataset_cli`.  Exit codes: 0 done,
1 (check-leaks) duplicates found across splits, 2 an error whose message says what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from capture.snapshots.formats import FORMATS
from rig.cli import ConfigOption, DataOption
from rig.errors import RigError
from rig.owner import DataFolderLock, current_owner, refuse

#: Called with (settings, data folder, snapshot id) after ``partrig dataset snapshot`` wrote a
#: snapshot.  Why a hook list: publishing sits above snapshots (it reads them), so
#: :mod:`capture.publish.cli` adds its step here when it registers its commands, and this
#: module never imports it.
AFTER_SNAPSHOT: list[Callable[[Any, Path, str], None]] = []

console = Console()
err_console = Console(stderr=True)


def _fail(exc: RigError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    return typer.Exit(code=2)


def snapshot_command(
    label: Annotated[list[str] | None, typer.Option("--label", help="only this class")] = None,
    run: Annotated[list[int] | None, typer.Option("--run", help="only this run id")] = None,
    background: Annotated[
        list[int] | None, typer.Option("--background", help="only this background sheet id")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="only shots from capture or sorter")
    ] = None,
    since: Annotated[str | None, typer.Option(help="captured at or after (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="captured at or before (ISO 8601)")] = None,
    min_per_class: Annotated[
        int, typer.Option(min=1, help="drop classes with fewer shots than this")
    ] = 1,
    train: Annotated[float | None, typer.Option(help="train fraction [snapshot.train]")] = None,
    val: Annotated[float | None, typer.Option(help="val fraction [snapshot.val]")] = None,
    test: Annotated[float | None, typer.Option(help="test fraction [snapshot.test]")] = None,
    seed: Annotated[int | None, typer.Option(help="split seed [snapshot.seed]")] = None,
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by",
            help="instance (leak-free) or the weaker session / pose, for classes with too few "
            "instances",
        ),
    ] = "instance",
    fmt: Annotated[
        list[str] | None,
        typer.Option("--format", help=f"one of {', '.join(FORMATS)}; repeat; default all"),
    ] = None,
    allow_empty_splits: Annotated[
        bool,
        typer.Option(
            "--allow-empty-splits",
            help="accept classes left with no val or test shots (refused otherwise)",
        ),
    ] = False,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Freeze a filtered view of the store into a new immutable snapshot with leak-free splits.

    Refuses when a class would get no val or test shots (unless --allow-empty-splits), and
    prints the share of held-out images with a near duplicate across splits first."""
    from capture.snapshots.build import create_snapshot
    from capture.snapshots.filter import GROUP_BY, SnapshotFilter
    from capture.snapshots.splits import SplitRules
    from capture.store import DatasetStore
    from rig.config import load_settings

    if group_by not in GROUP_BY:
        raise _fail(RigError(f"--group-by {group_by!r} must be one of {', '.join(GROUP_BY)}"))
    try:
        settings = load_settings(config)
        cfg = settings.snapshot
        rules = SplitRules(
            train=cfg.train if train is None else train,
            val=cfg.val if val is None else val,
            test=cfg.test if test is None else test,
            seed=cfg.seed if seed is None else seed,
            group_by=group_by,
            allow_empty=allow_empty_splits,
        )
        flt = SnapshotFilter(
            labels=tuple(label or ()),
            runs=tuple(run or ()),
            backgrounds=tuple(background or ()),
            sources=tuple(source or ()),
            since=since,
            until=until,
            min_per_class=min_per_class,
        )
        directory = data if data is not None else settings.data.dir
        owner = current_owner(directory)
        if owner is not None and not owner.is_server:
            raise refuse(owner, "`partrig dataset snapshot`", "wait until it ends")
        if owner is not None:
            # NOTE: the store's one writer is the lock holder (contracts.md, #7): the server
            # writes the snapshot (POST /api/snapshots) with the same function as below.
            manifest, report = _through_server(settings, owner, flt, rules, list(fmt or ()))
        else:
            from rich.progress import Progress

            lock = DataFolderLock(directory, "dataset snapshot")
            with (
                lock,
                Progress(console=console, transient=True, disable=not console.is_terminal) as bar,
                DatasetStore.open(directory) as store,
            ):
                task = bar.add_task("writing the snapshot", total=None)
                manifest = create_snapshot(
                    store,
                    settings,
                    flt,
                    rules,
                    formats=tuple(fmt or FORMATS),
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
                report = json.loads(
                    (store.data_dir / "snapshots" / manifest["id"] / "report.json").read_text()
                )
    except RigError as exc:
        raise _fail(exc) from None
    counts = manifest["counts"]
    size = sum(f["size"] for f in manifest["files"])
    dup = report["duplicates"]
    rate = float(dup.get("held_out_rate", 0.0))
    colour = "red" if rate >= 0.05 else "yellow" if rate > 0 else "green"
    # NOTE: the headline, printed first: a high rate means the held-out scores measure memory.
    console.print(
        f"[bold {colour}]near-duplicate rate across splits: {rate:.1%}[/] of val+test images "
        f"({dup['exact_cross_split']} exact, {dup['near_cross_split']} near pairs; report.md)",
        highlight=False,
    )
    console.print(
        f"[green]{manifest['id']}[/]: {counts['total']} shots "
        + ", ".join(f"{s} {n}" for s, n in counts["by_split"].items())
        + f"; {len(manifest['classes'])} classes; {size / 1e6:.1f} MB; "
        + ", ".join(manifest["formats"])
    )
    if report["split"]["weaker"]:
        console.print(f"[yellow]warning:[/] {report['split']['note']}", soft_wrap=True)
    if report["split"].get("inferred_groups"):
        console.print(f"split: {report['split']['note']}", soft_wrap=True, highlight=False)
    for label, missing in report["split"].get("empty_splits", {}).items():
        console.print(
            f"[yellow]warning:[/] {label} has no {' or '.join(missing)} shots "
            "(--allow-empty-splits): no held-out score covers it",
            soft_wrap=True,
        )
    if report["dropped_classes"]:
        console.print(f"dropped (too few shots): {report['dropped_classes']}")
    for hook in AFTER_SNAPSHOT:
        hook(settings, Path(data or settings.data.dir), manifest["id"])


def _through_server(
    settings: Any, owner: Any, flt: Any, rules: Any, formats: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask the server that owns the data folder to write the snapshot; (manifest, report)."""
    import httpx

    keys = settings.auth.operator_keys
    if not keys:
        raise refuse(
            owner,
            "`partrig dataset snapshot`",
            "add an operator key to auth.operator_keys (`partrig auth new-key --role "
            "operator`) so the command can go through the server's API",
        )
    body = {
        **flt.as_dict(),
        "train": rules.train,
        "val": rules.val,
        "test": rules.test,
        "seed": rules.seed,
        "group_by": rules.group_by,
        "formats": formats,
        "allow_empty_splits": rules.allow_empty,
    }
    with console.status(f"{owner.describe()} is writing the snapshot..."):
        try:
            reply = httpx.post(
                owner.url + "/api/snapshots",
                json=body,
                headers={"X-Api-Key": keys[0]},
                timeout=httpx.Timeout(30.0, read=3600.0),
            )
        except httpx.HTTPError as exc:
            raise RigError(f"{owner.describe()} did not answer: {exc}") from None
    try:
        answer = reply.json()
    except ValueError:
        answer = {"detail": reply.text[:200]}
    if reply.status_code >= 400:
        raise RigError(f"{owner.describe()} refused the snapshot: {answer.get('detail', answer)}")
    return answer["manifest"], answer["report"]


def snapshots_command(data: DataOption = None, config: ConfigOption = None) -> None:
    """List the snapshots, oldest first."""
    from capture.snapshots.build import list_snapshots
    from capture.store import DatasetStore
    from rig.config import load_settings

    try:
        directory = data if data is not None else load_settings(config).data.dir
        with DatasetStore.open(directory) as store:
            rows = list_snapshots(store)
    except RigError as exc:
        raise _fail(exc) from None
    table = Table(title="snapshots")
    for column in ("id", "created", "shots", "MB", "split"):
        table.add_column(column)
    for r in rows:
        split = r["group_by"] + (" (weaker)" if r["weaker"] else "")
        table.add_row(
            r["id"], r["created_at"][:19], str(r["shots"]), f"{r['bytes'] / 1e6:.1f}", split
        )
    console.print(table)


def check_leaks_command(
    folder: Annotated[Path, typer.Argument(help="folder-format dataset: DIR/{split}/{class}/")],
    max_distance: Annotated[
        int, typer.Option(min=0, max=100, help="near-duplicate pHash distance, in bits (of 256)")
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole result as JSON")] = False,
) -> None:
    """Find exact and near-duplicate images across splits of a folder-format dataset (exit 1)."""
    from capture.snapshots.leaks import leak_report

    try:
        result = leak_report(folder, max_distance)
    except RigError as exc:
        raise _fail(exc) from None
    dup = result["duplicates"]
    if as_json:
        console.print_json(json.dumps(result))
    else:
        for group in dup["exact"]:
            names = ", ".join(i["name"] for i in group["images"])
            console.print(f"[red]exact[/] {group['sha256'][:12]}: {names}", highlight=False)
        for pair in dup["near"]:
            console.print(
                f"[yellow]near[/] (distance {pair['distance']}): {pair['a']['name']} "
                f"{pair['b']['name']}",
                highlight=False,
            )
        console.print(
            f"{result['images']} images; {dup['exact_cross_split']} exact and "
            f"{dup['near_cross_split']} near duplicate(s) across splits"
        )
    if dup["exact_cross_split"] or dup["near_cross_split"]:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("snapshot")(snapshot_command)
    app.command("snapshots")(snapshots_command)
    app.command("check-leaks")(check_leaks_command)
