"""Where the web app's own files are: its templates and static assets.

Why a module of its own: the application factory (:mod:`web.app`) mounts the static files and
the pages router (:mod:`web.routers.pages`) renders the templates; with the path defined in the
factory, the router imported the module that imports it (a circle lint-imports refuses).
"""

from __future__ import annotations

from pathlib import Path

#: The ``web`` package folder, holding ``templates/`` and ``static/``.
WEB_DIR = Path(__file__).resolve().parent
