"""The stage registry (processors.stages): what the worker starts and where each stage lives."""

from __future__ import annotations

import subprocess
import sys

import pytest

from processors.settings import STAGES, load_settings
from processors.stages import REGISTRY, stage
from schemas.topics import ALL_TOPICS


def test_every_stage_is_named_once_in_data_flow_order() -> None:
    assert [spec.name for spec in REGISTRY] == ["ingest", "collapse", "boxes", "sync"]
    assert tuple(spec.name for spec in REGISTRY) == STAGES


def test_each_factory_is_the_stage_it_names_and_its_topics_are_in_the_topic_registry() -> None:
    for spec in REGISTRY:
        factory = spec.load()
        if spec.transactional:
            assert getattr(factory, "name", None) == spec.name
        assert set(spec.inputs) | set(spec.outputs) <= set(ALL_TOPICS)


def test_process_names_follow_the_process_count_settings() -> None:
    settings = load_settings().model_copy(update={"ingest_processes": 3})
    assert stage("ingest").process_names(settings) == ["ingest", "ingest.2", "ingest.3"]
    assert stage("collapse.2").name == "collapse"
    assert stage("boxes").process_names(settings) == ["boxes"]
    with pytest.raises(ValueError, match="unknown stage 'okr'"):
        stage("okr")


def test_a_stage_process_loads_neither_the_web_server_nor_the_other_stages() -> None:
    """What a collapse process imports to build its loop (a fresh interpreter, as spawn)."""
    code = ("import sys; from processors.runtime.stage_loop import build_loop; "
            "from processors.stages import stage; stage('collapse').load(); "
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('faust', 'aiohttp', 'processors'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip().split(",")
    assert not [name for name in loaded if name.split(".")[0] in ("faust", "aiohttp")]
    assert "processors.app" not in loaded
    assert not [name for name in loaded if name.startswith(("processors.ingest.agents",
                                                            "processors.web"))]
