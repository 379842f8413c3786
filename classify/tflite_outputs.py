"""Which output of an exported TFLite model is which Keras output.

Why by name: the TFLite converter lists a model's outputs in its own order, and two outputs may
have the same width (three colours, three labels), so widths cannot tell them apart.  The
converter names each output ``StatefulPartitionedCall...:k`` with ``k`` the Keras output's index,
in the float and the int8 model alike; :func:`keras_order` reads that, and refuses a model whose
names do not say.
"""

from __future__ import annotations

import re
from pathlib import Path

from rig.errors import ModelError

_INDEX = re.compile(r":(\d+)$")


def keras_order(model_path: Path) -> list[int]:
    """``positions[k]``: where Keras output ``k`` is in the TFLite model's output list."""
    from classify.runtime import find_interpreter

    _, interpreter_class = find_interpreter()
    outs = interpreter_class(model_path=str(model_path)).get_output_details()
    found = [_INDEX.search(str(o.get("name", ""))) for o in outs]
    keys = [int(m.group(1)) for m in found if m is not None]
    if len(keys) != len(outs) or sorted(keys) != list(range(len(outs))):
        names = [str(o.get("name", "")) for o in outs]
        raise ModelError(
            f"{Path(model_path).name}: cannot tell its outputs apart by name ({names}); "
            "export it with this version of partrig"
        )
    positions = [0] * len(outs)
    for position, k in enumerate(keys):
        positions[k] = position
    return positions
