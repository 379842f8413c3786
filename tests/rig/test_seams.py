"""The seams' modules import one way: drivers never reach the factory that builds them.

lint-imports (``make test``) refuses any circle; these name the ones issue 15 removed, so a
regression says which seam broke.  Indirect chains count: a driver importing a module that
imports the factory closes the circle as surely as a direct import.
"""

from __future__ import annotations

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("rig", "classify", cache_dir=None)


@pytest.mark.parametrize(
    ("driver", "factory"),
    [
        ("rig.camera_opencv", "rig.camera"),
        ("rig.camera_picamera2", "rig.camera"),
        ("rig.sim.camera", "rig.camera"),
        ("classify.actuator_gpio", "classify.actuator"),
        ("classify.actuator_sim", "classify.actuator"),
        ("rig.sim.gcode_exec", "rig.sim.marlin"),
        ("rig.link_handshake", "rig.link"),
        ("rig.link_recovery", "rig.link"),
    ],
)
def test_a_driver_never_imports_its_factory(graph: grimp.ImportGraph, driver: str, factory: str):
    assert graph.direct_import_exists(importer=factory, imported=driver), f"{factory} uses {driver}"
    chain = graph.find_shortest_chain(importer=driver, imported=factory)
    assert chain is None, f"{driver} reaches {factory}: {' -> '.join(chain or ())}"
