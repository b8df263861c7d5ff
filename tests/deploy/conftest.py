"""Deployment artefacts: the Helm chart (rendered by a real helm, built once from the Go module
proxy by deploy/tools/helm.sh), the Kubernetes examples and the monitoring rules."""

from __future__ import annotations

import os
import shutil
import signal
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
    # A cold Go build cache makes the build take about 7 minutes of CPU: `make test` must stay
    # under 15, so the build gets a budget; an interrupted build keeps what Go compiled so far
    # (its cache), and `make helm` finishes it outside the suite.
    budget = float(os.environ.get("BOXSYNC_HELM_BUILD_SECONDS", "60"))
    # Its own session, so that a build past its budget is stopped whole (go and its compilers).
    build = subprocess.Popen([str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        stdout, stderr = build.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(build.pid, signal.SIGKILL)
        build.communicate()
        pytest.skip(f"helm not built within {budget:.0f} s (BOXSYNC_HELM_BUILD_SECONDS); "
                    "run `make helm` once, then the chart tests run")
    done = subprocess.CompletedProcess(build.args, build.returncode, stdout, stderr)
    if done.returncode != 0:
        pytest.skip(f"helm not available: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found
