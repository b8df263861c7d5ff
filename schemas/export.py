"""Export the JSON Schema of every boxsync message to schemas/json/ (`make schemas`).

A unit test fails when an export is stale, so a model change always ships with its schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.commands import SyncCommand, SyncStatus
from schemas.events import ALL_MODELS as MESSAGE_MODELS
from schemas.reference import Box, KeyResultLink, PermissionGrant

ALL_MODELS: dict[str, type[BaseModel]] = {
    **MESSAGE_MODELS, "Box": Box, "PermissionGrant": PermissionGrant,
    "KeyResultLink": KeyResultLink, "SyncCommand": SyncCommand, "SyncStatus": SyncStatus}

JSON_DIR = Path(__file__).resolve().parent / "json"


def rendered() -> dict[str, str]:
    """File name → the schema's text, exactly as it is written to disk."""
    return {f"{name}.schema.json": json.dumps(model.model_json_schema(mode="serialization"),
                                              indent=2, sort_keys=True) + "\n"
            for name, model in ALL_MODELS.items()}


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for file_name, text in rendered().items():
        (JSON_DIR / file_name).write_text(text)
        print(f"wrote schemas/json/{file_name}", file=sys.stderr)


if __name__ == "__main__":
    main()
