"""Where the kit templates live, and which sets exist: a convention names the set its kits use.

Here rather than with the rendering so that checking a convention needs no renderer (the kits
depend on the reference data, not the other way round).
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES_ROOT = Path(__file__).resolve().parents[2] / "templates"


def template_set_exists(name: str) -> bool:
    return (TEMPLATES_ROOT / "html" / name / "kit.html").is_file()
