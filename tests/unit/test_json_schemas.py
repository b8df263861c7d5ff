"""The exported JSON Schemas match the pydantic models (run `make schemas` after a change)."""

from __future__ import annotations

import pytest

from schemas.export import JSON_DIR, rendered


@pytest.mark.parametrize("file_name", sorted(rendered()))
def test_export_is_current(file_name: str) -> None:
    path = JSON_DIR / file_name
    assert path.exists(), f"{path} is missing: run `make schemas`"
    assert path.read_text() == rendered()[file_name], f"{path} is stale: run `make schemas`"


def test_every_message_has_a_schema_version() -> None:
    for file_name, text in rendered().items():
        if file_name != "Person.schema.json":
            assert '"schema_version"' in text, file_name
