"""A bounded schemathesis pass over the OpenAPI schema with valid operator credentials.

It proves no generated request (bad ids, odd strings, wrong types, bad cursors) makes the
server answer 5xx.  The endpoints that stream forever (the MJPEG previews of the rig and the
sorter's feeder, a live run's events) are left out: a fuzzer cannot finish reading them.
"""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from web_helpers import OP, FakeRig, add_shots, make_settings

from web.app import create_app

_state: dict = {}
HARDWARE_ERRORS = {"LinkError", "CameraError", "ActuatorError"}


def _app():
    import tempfile
    from pathlib import Path

    from capture.store import DatasetStore

    tmp = Path(tempfile.mkdtemp(prefix="partrig-fuzz-"))
    conf = make_settings(tmp / "data")
    store = DatasetStore.open(conf.data.dir)
    add_shots(store, ["3001", "3003"], [1, 2], per=1)
    app = create_app(conf, rig=FakeRig(), store=store)
    _state["app"] = app
    return app


schema = schemathesis.openapi.from_dict(_app().openapi()).exclude(path_regex=r"(\.mjpg|/events)$")


@schema.parametrize()
# NOTE: derandomized so CI is reproducible; 40 examples per route found the bugs 8 missed.
@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case):
    client = _state.get("client")
    if client is None:
        client = TestClient(_state["app"])
        client.__enter__()
        _state["client"] = client
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=OP)
    kwargs.pop("verify", None)
    kwargs.pop("cert", None)
    response = client.request(**kwargs)
    # NOTE: a 503 naming a hardware error is the documented answer when the (fake) board does
    # not handshake, e.g. a reconnect to the fake link; any other 5xx is a bug.
    hardware = response.status_code == 503 and response.json().get("error") in HARDWARE_ERRORS
    assert response.status_code < 500 or hardware, (
        kwargs["method"],
        kwargs["url"],
        response.text[:300],
    )
