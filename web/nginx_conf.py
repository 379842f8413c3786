"""The nginx site that fronts ``partrig serve`` on the Pi, as text: one source for the deployed
file, the pull benchmark and the tests.

Why nginx in front: partrig checks the trainer's key, the rate limit and the manifest, then
answers with ``X-Accel-Redirect`` (``web.accel_redirect``) and nginx sends the snapshot file
itself with sendfile, Range and Content-Length.  A Pi pushing gigabytes through Python would
spend a core on it, the core the sorter needs; nginx spends almost nothing.  Everything else
(pages, API, SSE, MJPEG preview) is proxied unbuffered.

``python -m web.nginx_conf > deploy/nginx-partrig.conf`` rewrites the shipped file;
tests/web/test_nginx_front.py fails when it is out of step.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The internal location; set the same value as ``web.accel_redirect`` in partrig.toml.
ACCEL_PREFIX = "/_partrig_snapshots"


def site_config(
    *,
    listen: str = "80",
    upstream: str = "127.0.0.1:8000",
    snapshots_dir: str = "/opt/partrig/data/snapshots",
    prefix: str = ACCEL_PREFIX,
) -> str:
    """An nginx ``upstream`` and ``server`` block (both belong in the ``http`` context): proxy to
    partrig over kept-alive connections, serve snapshot files by internal redirect."""
    return f"""\
# partrig behind nginx: written by `python -m web.nginx_conf`; see docs/deployment.md.
# partrig.toml must say:  [web] accel_redirect = "{prefix}"
upstream partrig_app {{
    server {upstream};
    keepalive 16;                          # reused connections: a pull asks once per file
}}

server {{
    listen {listen};
    client_max_body_size 512m;             # model uploads (POST /api/models)

    location / {{
        proxy_pass http://partrig_app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";    # keep the upstream connection open
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_buffering off;               # server-sent events and the MJPEG preview
        proxy_read_timeout 1h;
    }}

    # Only reachable through partrig's X-Accel-Redirect, after it has checked the key.
    location {prefix}/ {{
        internal;
        alias {snapshots_dir.rstrip("/")}/;
        sendfile on;
        tcp_nopush on;
        etag off;                          # partrig's ETag is the file's sha256
        add_header ETag $upstream_http_etag always;
    }}
}}
"""


def standalone_config(server: str, run_dir: Path, name: str = "nginx") -> str:
    """A whole nginx.conf around ``server`` that runs unprivileged in the foreground, with its
    pid, logs and temporary files in ``run_dir``: for trying the site, the tests and the
    pull benchmark (``nginx -c FILE -p RUN_DIR``)."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = " ".join(
        f"{kind}_temp_path {run_dir}/{name}-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 2;\ndaemon off;\npid {run_dir}/{name}.pid;\n"
        f"error_log {run_dir}/{name}-error.log;\nevents {{ worker_connections 1024; }}\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on; {temp}\n{server}\n}}\n"
    )


def main() -> None:
    sys.stdout.write(site_config())


if __name__ == "__main__":
    main()
