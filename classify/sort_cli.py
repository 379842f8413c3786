"""``partrig sort [--sim] [--parts N]``: run the sorter from a terminal.

Why two modes: one process owns the hardware (contracts.md).  When ``partrig serve`` owns the
data folder (its lock, :mod:`rig.owner`), it holds the camera and the actuator, so this command
starts the server's sorter over the HTTP API (``X-Api-Key`` from ``auth.operator_keys[0]``),
follows its status, and stops it after N parts or on Ctrl-C; ``--local`` then refuses, naming
the server.  When nothing owns it, it takes the lock, opens the camera and the actuator itself,
loads the active model from the store, takes the empty reference and sorts in this process.
Without an active model it refuses unless ``--collect-for-review`` says every part may go to
the review bin (contracts.md, #7).  With
``--sim`` the parts come from the simulated feeder (classify/feeder_sim.py).

Exit codes: 0 done (N parts, or stopped with Ctrl-C), 1 a fault latched (its incident is
printed; acknowledge it on the Sorter page or with ``--acknowledge``), 2 bad input.
"""

from __future__ import annotations

import contextlib
import getpass
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from capture.runs.remote import base_url, find_owner
from rig.errors import ConfigError, FaultLatched, RigError, RunStateError
from rig.owner import DataFolderLock, refuse

if TYPE_CHECKING:
    import httpx

    from rig.config import Settings

console = Console()
err_console = Console(stderr=True)
POLL_S = 1.0
CHUNK = 10
NO_MODEL = (
    "no model is active, so every part would go to review: activate a model (Models page), "
    "or pass --collect-for-review to sort into the review bin on purpose"
)


def sort_command(
    sim: Annotated[bool, typer.Option("--sim", help="sort simulated parts")] = False,
    parts: Annotated[
        int, typer.Option("--parts", "-n", min=0, help="stop after this many parts (0 = Ctrl-C)")
    ] = 0,
    data: Annotated[Path | None, typer.Option("--data", help="data directory")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="never use a running server; open the hardware here")
    ] = False,
    acknowledge: Annotated[
        bool,
        typer.Option("--acknowledge", help="the latched sorter fault is dealt with: clear it"),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="simulated feeder's seed")] = 0,
    collect_for_review: Annotated[
        bool,
        typer.Option(
            "--collect-for-review",
            help="no model is active: sort anyway, sending every part to review",
        ),
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="configuration file")
    ] = None,
) -> None:
    """Sort parts unattended: classify each, fire it into its bin, log every decision."""
    try:
        from rig.config import load_settings

        settings = load_settings(config, sim=sim)
        if data is not None:
            settings.data.dir = data
        owner = find_owner(settings)
        if owner is not None and (local or not owner.is_server):
            instead = (
                "drop --local to drive the server's sorter, or stop the server"
                if owner.is_server
                else "wait until it ends"
            )
            raise refuse(owner, "`partrig sort" + (" --local`" if local else "`"), instead)
        if owner is not None:
            code = sort_remotely(settings, parts, acknowledge, collect_for_review, url=owner.url)
        else:
            code = sort_locally(settings, parts, acknowledge, seed, collect_for_review)
    except RigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


# --- in this process -------------------------------------------------------------------------


def sort_locally(
    settings: Settings,
    parts: int,
    acknowledge: bool,
    seed: int = 0,
    collect_for_review: bool = False,
) -> int:
    """Open the camera, actuator, store and active model here and sort ``parts`` parts."""
    from capture.store import DatasetStore
    from classify.actuator import open_actuator
    from classify.registry import ModelRegistry
    from classify.sorter import Sorter

    with contextlib.ExitStack() as stack:
        # NOTE: this process now owns the hardware and the data folder (rig/owner.py).
        stack.enter_context(DataFolderLock(settings.data.dir, "sort"))
        store = DatasetStore.open(settings.data.dir, thumbnail_px=settings.data.thumbnail_px)
        stack.callback(store.close)
        camera, world, clock = _platform(settings, seed, stack)
        actuator = open_actuator(settings, world=world)
        stack.callback(actuator.close)
        sorter = Sorter(camera, actuator, store, settings, clock)
        stack.callback(sorter.close)
        classifier, model_id = ModelRegistry(store, settings, None).load_active()
        sorter.set_classifier(classifier, model_id)
        if classifier is None:
            if not collect_for_review:
                raise RunStateError(NO_MODEL)
            console.print("[yellow]collect for review: no model is active, every part goes to "
                          "the review bin[/]")  # fmt: skip
        else:
            console.print(f"model {model_id} on {classifier.runtime}")
        if acknowledge:
            sorter.acknowledge(getpass.getuser())
        if sorter.incident is not None:
            return _report_fault(sorter.incident)
        rig_fault = store.active_fault()
        if rig_fault:
            raise FaultLatched(str(rig_fault.get("reason") or rig_fault))
        console.print("taking the empty reference: keep the platform clear")
        sorter.take_reference()
        return _sort_loop(sorter, parts)
    return 0  # pragma: no cover - the with block always returns


def _platform(settings: Settings, seed: int, stack: contextlib.ExitStack) -> tuple[Any, ...]:
    """The camera that looks at the platform (and the simulator's world and clock)."""
    if settings.sim:
        from classify.feeder_sim import SimFeeder

        feeder = SimFeeder(settings, seed=seed)
        stack.callback(feeder.camera.close)
        return feeder.camera, feeder.world, feeder.clock
    from rig.camera import open_camera

    camera = open_camera(settings.camera)
    stack.callback(camera.close)
    return camera, None, None


def _sort_loop(sorter: Any, parts: int) -> int:
    done = 0
    started = time.monotonic()
    try:
        while parts == 0 or done < parts:
            want = CHUNK if parts == 0 else min(CHUNK, parts - done)
            for d in sorter.run_parts(want):
                done += 1
                console.print(
                    f"{done:6d}  {d.label or '-':24s} {d.confidence:5.2f}  bin {d.bin:2d}"
                    f"  {d.reason}"
                )
            if sorter.incident is not None:
                return _report_fault(sorter.incident)
    except KeyboardInterrupt:
        console.print("stopped")
    sorter.flush()
    rate = done / max(1e-9, time.monotonic() - started)
    console.print(f"sorted {done} parts ({rate:.1f} per second); every decision is logged")
    return 0


def _report_fault(incident: dict[str, Any]) -> int:
    err_console.print(f"[red]sorter fault ({incident['kind']}):[/red] {incident['message']}")
    err_console.print("deal with it, then run again with --acknowledge (or use the Sorter page)")
    return 1


# --- through a running server ------------------------------------------------------------------


def sort_remotely(
    settings: Settings,
    parts: int,
    acknowledge: bool,
    collect_for_review: bool = False,
    transport: httpx.BaseTransport | None = None,
    url: str | None = None,
) -> int:
    """Start the server's sorter, follow it, stop it after ``parts`` parts or on Ctrl-C."""
    import httpx

    keys = settings.auth.operator_keys
    if not keys:
        raise ConfigError(
            "a partrig server is running, but auth.operator_keys is empty: add an operator key"
            " to the configuration (see `partrig auth new-key`), or stop the server"
        )
    with httpx.Client(
        base_url=url or base_url(settings), headers={"X-Api-Key": keys[0]}, transport=transport
    ) as client:
        if acknowledge:
            _call(client, "POST", "/api/sorter/acknowledge")
        body = {"collect_for_review": True} if collect_for_review else None
        status = _call(client, "POST", "/api/sorter/start", body)
        first = int(status.get("counts", {}).get("decisions", 0))
        model = status.get("model_id")
        with_what = (
            f"with model {model}"
            if model is not None
            else "with no model: every part goes to the review bin"
        )
        console.print(f"the server's sorter is {status.get('state')} {with_what}")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        done = 0
        columns = (TextColumn("sorting"), BarColumn(), MofNCompleteColumn(), TextColumn("parts"))
        try:
            with Progress(*columns, console=console) as bar:
                task = bar.add_task("sort", total=parts or None)
                while True:
                    status = _call(client, "GET", "/api/sorter/status")
                    done = int(status.get("counts", {}).get("decisions", 0)) - first
                    bar.update(task, completed=done)
                    if status.get("state") == "faulted":
                        return _report_fault(status["incident"])
                    if status.get("state") != "running":
                        console.print(f"the sorter was stopped on the server after {done} parts")
                        return 0
                    if parts and done >= parts:
                        break
                    time.sleep(POLL_S)
        except KeyboardInterrupt:
            pass
        _call(client, "POST", "/api/sorter/stop")
        console.print(f"stopped the server's sorter after {done} parts")
    return 0


def _call(
    client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    import httpx

    try:
        reply = client.request(method, path, json=body, timeout=30.0)
    except httpx.HTTPError as exc:
        raise RigError(f"the partrig server did not answer {path}: {exc}") from None
    if reply.status_code >= 400:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        raise RigError(f"the server refused {method} {path} ({reply.status_code}): {detail}")
    return reply.json()
