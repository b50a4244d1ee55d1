"""A store outage does not take the gateway down: requests go on, their usage records wait in the queue and
reach PostgreSQL once it is back. The outage is a TCP proxy in front of the test server that drops every
connection and refuses new ones, so the shared server itself is never stopped."""

from __future__ import annotations

import json
import os
import re

import httpx
import pytest

from e2e_support import OutageProxy, chat_body, nonce, wait_until

MASTER = "master-" + "b" * 32
POSTGRES = os.environ.get("SLUICE_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs SLUICE_TEST_POSTGRES_URL (scripts/start-postgres)")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_records_made_during_a_store_outage_arrive_when_it_is_back(procs):
    direct_port = int(re.search(r"@[^:/]+:(\d+)/", POSTGRES).group(1))
    proxy = OutageProxy(direct_port)
    proxy.up()
    proxied = POSTGRES.replace(f":{direct_port}/", f":{proxy.port}/", 1)
    model = f"outage-{nonce()}"
    mock = procs.start_mock("--model", model)
    gateway = procs.start_gateway(upstream=mock.url, args=["--database", proxied, "--master-key", MASTER])
    auth = {"authorization": f"Bearer {MASTER}"}

    def recorded() -> int:
        done = procs.run_sluice("usage", "--json", "--since", "1h", "--model", model, "--database", POSTGRES)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["totals"]["requests"]

    try:
        with httpx.Client(timeout=30, headers=auth) as client:
            def chat() -> None:
                r = client.post(f"{gateway.v1}/chat/completions", json=chat_body(nonce(), model=model))
                assert r.status_code == 200, r.text

            def write_failures() -> float:
                return metric(client.get(f"{gateway.url}/metrics").text, "sluice_usage_write_failures_total")

            for _ in range(3):
                chat()
            wait_until(lambda: recorded() == 3, "the first records in PostgreSQL")

            proxy.down()
            for _ in range(5):
                chat()  # answered although the store is unreachable
            wait_until(lambda: write_failures() >= 1, "a failed write while the store is down")
            assert recorded() == 3

            proxy.up()
            wait_until(lambda: recorded() == 8, "the queued records after the store came back")
            assert client.get(f"{gateway.url}/metrics").status_code == 200
            assert metric(client.get(f"{gateway.url}/metrics").text, "sluice_usage_records_dropped_total") == 0
    finally:
        proxy.down()
