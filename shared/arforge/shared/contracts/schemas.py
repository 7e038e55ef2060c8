"""JSON Schemas generated from the contract models, committed under ``shared/.../schemas``.

``python -m arforge.shared.contracts.schemas`` rewrites them; the contracts test fails
when the committed files differ from what the models generate (stale schemas).
Files: ``event.json``, ``job-message.json`` and, per job type, ``<type>.params.json`` and
``<type>.result.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .base import JobMessage
from .events import Event
from .registry import Registry

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def generate(registry: Registry | None = None) -> dict[str, str]:
    """File name -> schema text (sorted keys, 2-space indent, trailing newline)."""
    reg = registry or Registry()
    models: dict[str, type] = {"event.json": Event, "job-message.json": JobMessage}
    for spec in reg:
        models[f"{spec.type}.params.json"] = spec.params
        models[f"{spec.type}.result.json"] = spec.result
    out = {}
    for name, model in models.items():
        schema = model.model_json_schema()  # type: ignore[attr-defined]
        schema["$id"] = f"https://arforge.dev/schemas/{name}"
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema into ``directory``, removing stale ``*.json`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    files = generate()
    for old in directory.glob("*.json"):
        if old.name not in files:
            old.unlink()
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write():
        print(p)
    sys.exit(0)
