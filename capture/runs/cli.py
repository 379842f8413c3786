"""``partrig capture PLAN.toml [--sim] [--data DIR]`` and ``partrig capture --resume RUN_ID``.

Why two modes: one process owns the hardware (contracts.md).  When ``partrig serve`` owns the
data folder (its lock, :mod:`rig.owner`), the command hands the plan to it over the HTTP API
(``X-Api-Key`` from ``auth.operator_keys[0]``) and follows the run from there; ``--local`` then
refuses, naming the server.  When nothing owns it, the command takes the lock, opens the rig
and runs the engine in this process, with a rich progress bar, an ETA, and operator prompts
answered at the terminal.  With ``--sim`` the simulated operator performs each prompt's action
after Enter, or at once with ``--yes``.  Ctrl-C leaves the run ``interrupted``, so
``--resume`` continues it.

Exit codes: 0 completed, 1 failed, 2 bad input (plan, configuration, data dir, camera),
3 aborted or interrupted.
"""

from __future__ import annotations

import getpass
import queue
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from capture.runs.remote import RemoteCapture, find_owner
from capture.runs.run import CaptureRun, recover_interrupted_runs
from capture.runs.state import RunState
from rig.errors import RigError
from rig.owner import DataFolderLock, refuse

if TYPE_CHECKING:
    from rig.config import Settings

console = Console()
err_console = Console(stderr=True)

#: In --yes mode, this many prompts in a row with no shot stored means the simulated operator
#: cannot satisfy the engine (say, a sheet the camera cannot read): stop instead of looping.
MAX_PROMPTS_WITHOUT_PROGRESS = 12

EXIT_CODES = {RunState.COMPLETED: 0, RunState.FAILED: 1, RunState.ABORTED: 3}


def capture_command(
    plan: Annotated[Path | None, typer.Argument(help="capture plan (TOML)")] = None,
    resume: Annotated[
        int | None, typer.Option("--resume", help="resume this interrupted or failed run")
    ] = None,
    sim: Annotated[bool, typer.Option("--sim", help="use the simulated rig")] = False,
    data: Annotated[Path | None, typer.Option("--data", help="data directory")] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="answer operator prompts at once (simulation)")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="never use a running server; open the rig here")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="configuration file")
    ] = None,
    clear_fault: Annotated[
        bool,
        typer.Option(
            "--clear-fault",
            help="the cause of the latched fault is fixed: clear it before resuming (recorded)",
        ),
    ] = False,
) -> None:
    """Run a capture plan (or resume a run) with a progress bar, an ETA and operator prompts."""
    if (plan is None) == (resume is None):
        _fail("give either a plan file or --resume RUN_ID (not both, not neither)")
    try:
        from rig.config import load_settings

        settings = load_settings(config, sim=sim)
        if data is not None:
            settings.data.dir = data
        plan_toml = _read_plan(plan) if plan is not None else None
        owner = find_owner(settings)
        if owner is not None and (local or not owner.is_server):
            instead = (
                "drop --local to hand the plan to the server, or stop the server"
                if owner.is_server
                else "wait until it ends"
            )
            raise refuse(owner, "`partrig capture" + (" --local`" if local else "`"), instead)
        if owner is not None:
            remote = RemoteCapture(settings, console, url=owner.url, answer_at_once=yes)
            state = remote.run(plan_toml, resume)
        else:
            state = run_locally(
                settings, plan_toml, resume, answer_at_once=yes, clear_fault=clear_fault
            )
    except RigError as exc:
        _fail(str(exc))
    raise typer.Exit(EXIT_CODES.get(state, 3))


def _read_plan(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read the plan {path}: {exc.strerror}; check the path")
    raise AssertionError("unreachable")


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def run_locally(
    settings: Settings,
    plan_toml: str | None,
    resume: int | None,
    *,
    answer_at_once: bool = False,
    phase_hook: Any = None,
    clear_fault: bool = False,
) -> RunState:
    """Open the store and the rig in this process and run the engine to its end."""
    from capture.store import DatasetStore
    from rig.rig import open_rig

    # NOTE: this process now owns the rig and the data folder: a server started meanwhile
    # refuses, and recovery and temp-file cleanup below run only in the lock's holder.
    owner = DataFolderLock(settings.data.dir, "capture").acquire()
    try:
        store = DatasetStore.open(settings.data.dir)
    except BaseException:
        owner.close()
        raise
    try:
        recover_interrupted_runs(store)
        startup_check = getattr(store, "startup_check", None)
        if startup_check is not None:
            # NOTE: removes the temporary files a killed writer left behind, before resuming.
            startup_check()
        if clear_fault and store.clear_fault(f"partrig capture ({getpass.getuser()})"):
            console.print("latched fault cleared")
        with open_rig(settings) as rig:
            if plan_toml is not None:
                run = CaptureRun.create(
                    store, rig, plan_toml, settings=settings, phase_hook=phase_hook
                )
                console.print(f"run [bold]{run.run_id}[/] created ({settings.data.dir})")
            else:
                assert resume is not None
                run = CaptureRun.load(store, rig, resume, settings=settings, phase_hook=phase_hook)
                console.print(f"resuming run [bold]{run.run_id}[/] ({run.state.value})")
            return TerminalOperator(run, answer_at_once, settings.sim).follow()
    finally:
        store.close()
        owner.close()


class TerminalOperator:
    """Shows a run's progress and asks the operator at the terminal when the run prompts."""

    def __init__(self, run: CaptureRun, answer_at_once: bool, simulated: bool) -> None:
        self.run = run
        self.answer_at_once = answer_at_once
        self.simulated = simulated
        self.events: queue.Queue[Any] = queue.Queue()
        self.prompts_in_a_row = 0

    def follow(self) -> RunState:
        run = self.run
        unsubscribe = run.subscribe(self.events.put)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
        )
        try:
            with Progress(*columns, console=console, transient=False) as bar:
                task = bar.add_task(f"run {run.run_id}", total=None, eta="-")
                run.start()
                try:
                    self._loop(bar, task)
                except KeyboardInterrupt:
                    if run.live:
                        run.interrupt()
                    run.wait()
                    console.print(
                        f"interrupted; resume with: partrig capture --resume {run.run_id}"
                    )
        finally:
            unsubscribe()
        state = run.state
        colour = "green" if state is RunState.COMPLETED else "red"
        tail = f": {run.reason}" if run.reason and state is not RunState.COMPLETED else ""
        console.print(f"run {run.run_id} [{colour}]{state.value}[/]{tail}", highlight=False)
        return state

    def _loop(self, bar: Progress, task: Any) -> None:
        run = self.run
        while run.alive or not self.events.empty():
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            d = event.data
            eta = d.get("eta_s")
            bar.update(
                task,
                completed=d.get("done", 0),
                total=d.get("total") or None,
                eta="-" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}",
            )
            if event.kind == "shot":
                bar.update(
                    task,
                    description=f"run {run.run_id} {d['label']} on sheet {d['background']}"
                    f" at {d['angle']:.0f}°",
                )
            elif event.kind == "stored":
                self.prompts_in_a_row = 0
            elif event.kind == "state" and d.get("state") == RunState.AWAITING_OPERATOR.value:
                self._answer(bar, d.get("prompt") or "")

    def _answer(self, bar: Progress, prompt: str) -> None:
        run = self.run
        self.prompts_in_a_row += 1
        bar.console.print(f"[bold yellow]operator:[/] {prompt}", highlight=False)
        if self.answer_at_once:
            if self.prompts_in_a_row > MAX_PROMPTS_WITHOUT_PROGRESS:
                run.abort(
                    f"{self.prompts_in_a_row - 1} prompts in a row were answered without"
                    f" progress; last prompt: {prompt}"
                )
                return
        else:
            bar.stop()
            what = "the simulated operator does it" if self.simulated else "when done"
            try:
                input(f"  press Enter ({what}) ")
            except EOFError:
                run.interrupt("no operator at the terminal (stdin closed)")
                return
            finally:
                bar.start()
        if run.state is RunState.AWAITING_OPERATOR:
            run.answer_prompt()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(capture_command)


if __name__ == "__main__":
    sys.exit(app())
