"""The capture CLI's client for a running ``partrig serve``: one process owns the hardware.

Why: when the server is up it holds the serial port and the camera, so ``partrig capture``
must not open them too; it creates and starts the run through the HTTP API instead and follows
its progress, answering prompts at the terminal.  The key is ``auth.operator_keys[0]``, sent in
the ``X-Api-Key`` header (contracts.md).  The server is found through the data folder's lock
(:mod:`rig.owner`), which names its URL, and only then by probing the configured port.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console

from capture.runs.state import FINAL_STATES, RunState, parse_state
from rig.errors import ConfigError, RigError, RunStateError
from rig.owner import Owner, client_url, hardware_owner

if TYPE_CHECKING:
    import httpx

    from rig.config import Settings


def base_url(settings: Settings) -> str:
    """The configured server address as this machine reaches it."""
    return client_url(settings.web.host, settings.web.port)


def find_owner(settings: Settings) -> Owner | None:
    """Who owns the rig now: the data folder's lock holder (a ``partrig serve`` on any port,
    or another command that opened the rig), else a server answering on the configured port."""
    return hardware_owner(
        settings.data.dir, settings.web.host, settings.web.port, probe_port=not settings.sim
    )


def server_is_up(settings: Settings) -> bool:
    """True when a ``partrig serve`` owns this rig (see :func:`find_owner`)."""
    owner = find_owner(settings)
    return owner is not None and owner.is_server


#: With ``--yes``, this many prompts answered with no shot stored between them means the
#: simulated operator cannot do what the run asks (say, a sheet the camera cannot read).
MAX_PROMPTS_WITHOUT_PROGRESS = 12


class RemoteCapture:
    """Create or resume a run on the server and follow it until it ends."""

    def __init__(
        self,
        settings: Settings,
        console: Console,
        poll_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        url: str | None = None,
        answer_at_once: bool = False,
    ) -> None:
        """``answer_at_once`` (``--yes``) answers each prompt without asking at the terminal:
        on a simulated rig the server's simulated operator then performs the action."""
        keys = settings.auth.operator_keys
        if not keys:
            raise ConfigError(
                "a partrig server is running, but auth.operator_keys is empty: add an operator"
                " key to the configuration (see `partrig auth new-key`), or stop the server"
            )
        import httpx

        self.client = httpx.Client(
            base_url=url or base_url(settings),
            headers={"X-Api-Key": keys[0]},
            timeout=10.0,
            transport=transport,
        )
        self.console = console
        self.poll_s = poll_s
        self.answer_at_once = answer_at_once

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        import httpx

        try:
            reply = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise RigError(
                f"the partrig server stopped answering ({exc}); check `partrig serve`"
            ) from None
        if reply.status_code == 409:
            raise RunStateError(_detail(reply))
        if reply.status_code >= 400:
            raise RigError(
                f"server refused {method} {path} ({reply.status_code}): {_detail(reply)}"
            )
        return reply.json() if reply.content else {}

    def run(self, plan_toml: str | None, resume: int | None) -> RunState:
        if plan_toml is not None:
            created = self._call("POST", "/api/runs", json={"plan_toml": plan_toml})
            run_id = int(created["id"])
            self.console.print(f"run [bold]{run_id}[/] created on the server")
        else:
            assert resume is not None
            run_id = resume
        self._call("POST", f"/api/runs/{run_id}/start")
        return self.follow(run_id)

    def follow(self, run_id: int) -> RunState:
        """Show the run's progress and ETA until it ends; answer its prompts."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ETA {task.fields[eta]}"),
        )
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(f"run {run_id} on the server", total=None, eta="-")
            state, done, total, reason = self._follow(run_id, bar, task)
        tail = f": {reason}" if reason and state is not RunState.COMPLETED else ""
        colour = "green" if state is RunState.COMPLETED else "red"
        self.console.print(
            f"run {run_id} [{colour}]{state.value}[/] ({done} of {total} shots){tail}",
            highlight=False,
        )
        return state

    def _follow(self, run_id: int, bar: Any, task: Any) -> tuple[RunState, Any, Any, Any]:
        last_prompt = None
        answered: list[Any] = []  # the done count at each prompt answered at once
        while True:
            run = self._call("GET", f"/api/runs/{run_id}")
            state = parse_state(run["state"])
            done = run.get("done", run.get("shots_done")) or 0
            total = run.get("shots_total") or run.get("total") or None
            eta = run.get("eta_s")
            bar.update(
                task,
                completed=done,
                total=total,
                eta="-" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}",
            )
            if state is RunState.AWAITING_OPERATOR and run.get("prompt") != last_prompt:
                last_prompt = run.get("prompt")
                bar.console.print(f"[bold yellow]operator:[/] {last_prompt}", highlight=False)
                answered.append(done)
                if self.answer_at_once and answered.count(done) > MAX_PROMPTS_WITHOUT_PROGRESS:
                    # NOTE: the simulated operator cannot satisfy this prompt: stop, don't loop.
                    self._call("POST", f"/api/runs/{run_id}/abort")
                    time.sleep(self.poll_s)
                    continue
                if not self.answer_at_once:
                    bar.stop()
                    try:
                        input("  press Enter when done ")
                    finally:
                        bar.start()
                self._call("POST", f"/api/runs/{run_id}/answer")
            elif state is not RunState.AWAITING_OPERATOR:
                last_prompt = None
            if state in FINAL_STATES or state in (RunState.FAILED, RunState.INTERRUPTED):
                return state, done, total, run.get("reason")
            time.sleep(self.poll_s)


def _detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)
