"""Settings parsing (pure: the values are passed in, no environment is read)."""

from __future__ import annotations

import pytest

from processors.settings import STAGES, SettingsError, load_settings


def test_a_worker_runs_every_stage_by_default() -> None:
    assert load_settings().worker_stages == STAGES


@pytest.mark.parametrize(("value", "expected"), [
    ("ingest", ("ingest",)),
    ("sync, Ingest", ("ingest", "sync")),  # spaces and case do not matter; order is the stages'
    ("collapse,collapse,boxes", ("collapse", "boxes")),
])
def test_worker_stages_is_a_comma_separated_subset(value: str,
                                                   expected: tuple[str, ...]) -> None:
    assert load_settings(worker_stages=value).worker_stages == expected


@pytest.mark.parametrize(("value", "message"), [
    ("ingest,colapse", "unknown stage colapse (choose from ingest,collapse,boxes,sync)"),
    (" , ", "name at least one stage"),
])
def test_a_bad_stage_list_names_the_variable_and_the_choices(value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(worker_stages=value)
    assert "BOXSYNC_WORKER_STAGES" in str(error.value)
    assert message in str(error.value)
