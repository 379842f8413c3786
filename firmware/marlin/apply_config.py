"""Apply partrig's Marlin option list (config.ini) to a Marlin tree's configuration headers.

Why this exists: Marlin's own ``buildroot/share/PlatformIO/scripts/configuration.py`` runs only
inside a PlatformIO build.  The Makefile route (Marlin/Makefile with Debian's avr-gcc and
arduino-core-avr) never applies ``config.ini``, so without this script a Makefile build is
stock Marlin.  This script follows the same rules as Marlin's script (``ini_use_config``
selects the sections; ``on`` uncomments a ``#define``, ``off`` comments it out, any other
value enables it and replaces its value, keeping a trailing comment; every matching line of
the first header that has the name is changed) with one difference on purpose: a name that
neither header defines is an error here, where Marlin's script silently adds it at the top of
Configuration.h, so a misspelt option would be ignored without a word.

Usage (standard library only)::

    python3 firmware/marlin/apply_config.py /path/to/Marlin-tree [--ini firmware/marlin/config.ini]

The tree is the folder holding ``Marlin/Configuration.h`` (or that ``Marlin`` folder itself).
Nothing is written unless every option applies.
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_INI = HERE / "config.ini"
HEADERS = ("Configuration.h", "Configuration_adv.h")


class ConfigIniError(ValueError):
    """The option list or the Marlin tree is not what the build needs; the message says why."""


def read_ini(path: Path) -> configparser.ConfigParser:
    """Parse ``path`` as Marlin's script does (keys case-insensitive, no inline comments)."""
    parser = configparser.ConfigParser()
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise ConfigIniError(f"cannot read {path}: {exc}") from exc
    return parser


def _section_items(cp: configparser.ConfigParser, name: str) -> list[tuple[str, str]]:
    return cp.items(name) if cp.has_section(name) else []


def _items_of(cp: configparser.ConfigParser, section: str) -> list[tuple[str, str]]:
    # NOTE: like Marlin's apply_ini_by_name: [config:base]/[config:root] never apply their
    # ini_* keys when named as base; every other section applies all of its items.
    if section in ("config:base", "config:root"):
        items = _section_items(cp, "config:base") + _section_items(cp, "config:root")
        return [(k, v) for k, v in items if not k.startswith("ini_")]
    return _section_items(cp, section)


def selected_options(cp: configparser.ConfigParser) -> list[tuple[str, str]]:
    """The (name, value) pairs Marlin's configuration script would apply, in its order."""
    keys = ["base"]
    for key, value in _section_items(cp, "config:base") + _section_items(cp, "config:root"):
        if key == "ini_use_config":
            keys = [k.strip() for k in value.split(",")]
    options: list[tuple[str, str]] = []
    for key in keys:
        if key.endswith(".ini") or key.startswith(("example", "http")):
            raise ConfigIniError(
                f"ini_use_config = {key!r} loads another file or downloads one; this script "
                "applies only sections of this file (use all, base, basic, advanced or a "
                "section name)"
            )
        if key == "all":
            for section in cp.sections():
                if section.startswith("config:"):
                    options += _items_of(cp, section)
        elif key in ("base", "root"):
            options += _items_of(cp, "config:base")
        elif key in ("adv", "advanced"):
            options += _items_of(cp, "config:advanced")
        elif key != "none":
            options += _items_of(cp, key if key.startswith("config:") else f"config:{key}")
    return options


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"^(\s*)(//\s*)?(#define\s+)({re.escape(name)}\b)(\s*)(.*?)(\s*)(//.*)?$", re.IGNORECASE
    )


def _rewrite(line: str, match: re.Match[str], value: str) -> str:
    if value in ("on", ""):
        return re.sub(r"^(\s*)//+\s*(#define)(\s{1,3})?(\s*)", r"\1\2 \4", line)
    if value == "off":
        return re.sub(r"^(\s*)(#define)(\s{1,3})?(\s*)", r"\1//\2 \4", line)
    new = match[1] + match[3] + match[4] + match[5] + value
    if match[8]:
        new += (match[7] or " ") + match[8]
    return new


def apply_options(options: list[tuple[str, str]], marlin_dir: Path) -> list[str]:
    """Rewrite the headers in ``marlin_dir``; return one line per option applied."""
    texts = {}
    for header in HEADERS:
        path = marlin_dir / header
        if not path.is_file():
            raise ConfigIniError(f"{path} is missing: give the Marlin source tree")
        texts[header] = path.read_text(encoding="utf-8").split("\n")
    report, unknown = [], []
    for name, value in options:
        regex = _pattern(name)
        for header in HEADERS:
            lines = texts[header]
            hits = [(i, m) for i, line in enumerate(lines) if (m := regex.match(line))]
            if hits:
                for i, match in hits:
                    lines[i] = _rewrite(lines[i], match, value)
                report.append(f"{header}: {name.upper()} = {value}")
                break
        else:
            unknown.append(name.upper())
    if unknown:
        raise ConfigIniError(
            "not defined in Configuration.h or Configuration_adv.h (misspelt, or not in this "
            f"Marlin version): {', '.join(unknown)}"
        )
    for header, lines in texts.items():
        path, text = marlin_dir / header, "\n".join(lines)
        # NOTE: an unchanged header keeps its mtime, so re-running before `make` rebuilds nothing
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return report


def marlin_folder(tree: Path) -> Path:
    """The folder holding Configuration.h: ``tree/Marlin`` or ``tree`` itself."""
    return tree / "Marlin" if (tree / "Marlin" / "Configuration.h").is_file() else tree


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree", type=Path, help="Marlin source tree (or its Marlin/ folder)")
    ap.add_argument("--ini", type=Path, default=DEFAULT_INI, help="option list to apply")
    args = ap.parse_args(argv)
    try:
        report = apply_options(selected_options(read_ini(args.ini)), marlin_folder(args.tree))
    except ConfigIniError as exc:
        print(f"apply_config: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report))
    print(f"apply_config: {len(report)} options applied from {args.ini}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
