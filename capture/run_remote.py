"""The capture CLI's client for a running ``partrig serve``: one process owns the hardware.

Why: when the server is up it holds the serial port and the camera, so ``partrig capture``
must not open them too; it creates and starts the run through the HTTP API instead and follows
its progress, answering prompts at the terminal.  The key is ``auth.operator_keys[0]``, sent in
the ``X-Api-Key`` header (contracts.md).  The server is found through the data folder's lock
(:mod:`rig.owner`), which names its URL, and only then by probing the configured port.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console

from capture.run_state import FINAL_STATES, RunState, parse_state
from rig.config import Settings
from rig.errors import ConfigError, RigError, RunStateError
from rig.owner import Owner, client_url, hardware_owner


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


class RemoteCapture:
    """Create or resume a run on the server and follow it until it ends."""

    def __init__(
        self,
        settings: Settings,
        console: Console,
        poll_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        url: str | None = None,
    ) -> None:
        keys = settings.auth.operator_keys
        if not keys:
            raise ConfigError(
                "a partrig server is running, but auth.operator_keys is empty: add an operator"
                " key to the configuration (see `partrig auth new-key`), or stop the server"
            )
        self.client = httpx.Client(
            base_url=url or base_url(settings),
            headers={"X-Api-Key": keys[0]},
            timeout=10.0,
            transport=transport,
        )
        self.console = console
        self.poll_s = poll_s

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
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
            run_id = int(created.get("id", created.get("run_id")))
            self.console.print(f"run [bold]{run_id}[/] created on the server")
        else:
            assert resume is not None
            run_id = resume
        self._call("POST", f"/api/runs/{run_id}/start")
        return self.follow(run_id)

    def follow(self, run_id: int) -> RunState:
        last_prompt = None
        while True:
            run = self._call("GET", f"/api/runs/{run_id}")
            state = parse_state(run["state"])
            done, total = run.get("shots_done", run.get("done")), run.get("shots_total")
            if state is RunState.AWAITING_OPERATOR and run.get("prompt") != last_prompt:
                last_prompt = run.get("prompt")
                self.console.print(f"[bold yellow]operator:[/] {last_prompt}", highlight=False)
                input("  press Enter when done ")
                self._call("POST", f"/api/runs/{run_id}/answer")
            elif state in FINAL_STATES or state in (RunState.FAILED, RunState.INTERRUPTED):
                reason = run.get("reason")
                self.console.print(f"run {run_id} {state.value} ({done}/{total}) {reason or ''}")
                return state
            time.sleep(self.poll_s)


def _detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)
