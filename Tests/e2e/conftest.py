"""Fixtures for the Sluice end-to-end suite.

The real `sluice` binary ($SLUICE_BIN, default .build/debug/sluice) is started against
`sluice mock-upstream`; everything listens on 127.0.0.1 on ports picked by binding port 0.

- `procs` (per test) and `module_procs` (per module) start processes and stop them at teardown
  (SIGTERM, then SIGKILL after a deadline). Their stdout/stderr go to files in a pytest tmp dir
  and are attached to the report of a failing test.
- `mock` + `gateway` are a module-scoped default pair; tests needing special processes start
  their own through `procs`.
"""

from __future__ import annotations

import os

import httpx
import pytest

from e2e_support import LIVE_PROCESSES, ProcessGroup, make_ollama, make_openai, sluice_bin


def pytest_sessionstart(session):
    binary = sluice_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise pytest.UsageError(
            f"sluice binary not found at {binary}; build it (swift build) or set SLUICE_BIN"
        )


BACKENDS = ["sqlite"]
if os.environ.get("SLUICE_TEST_POSTGRES_URL"):
    BACKENDS.append("postgres")


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path):
    """A store URL, once per backend: a fresh SQLite file, and the CI's PostgreSQL when one is configured."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'sluice.db'}"
    return os.environ["SLUICE_TEST_POSTGRES_URL"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for proc in list(LIVE_PROCESSES):
            report.sections.append((f"process log {proc.name}", proc.logs()))


@pytest.fixture
def procs(tmp_path):
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory):
    group = ProcessGroup(tmp_path_factory.mktemp("procs"))
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def mock(module_procs):
    return module_procs.start_mock()


@pytest.fixture(scope="module")
def gateway(module_procs, mock):
    return module_procs.start_gateway(upstream=mock.url)


@pytest.fixture(scope="module")
def oai(gateway):
    client = make_openai(gateway)
    yield client
    client.close()


@pytest.fixture(scope="module")
def oll(gateway):
    return make_ollama(gateway)


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client
