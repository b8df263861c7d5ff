"""Deployment artefacts: the Helm chart (rendered by a real helm, built once from the Go module
proxy by deploy/tools/helm.sh), the Kubernetes examples and the monitoring rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "boxsync"
PRODUCTION = CHART / "values-production.yaml"


@pytest.fixture(scope="session")
def helm() -> str:
    """The pinned helm; skipped, with the reason, when it cannot be built here."""
    script = ROOT / "deploy" / "tools" / "helm.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=3600,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"helm not available: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found
