"""Budget reservations: concurrent calls on an almost-spent budget are held to it by reserving each call's worst
case before it is sent, on both stores."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from e2e_support import nonce, wait_until

MASTER = "master-" + "f" * 32
POSTGRES = os.environ.get("SLUICE_TEST_POSTGRES_URL")


def test_twenty_concurrent_calls_on_a_budget_for_three(procs, database, tmp_path):
    # A dollar per token makes costs easy to reason about.
    config = tmp_path / "sluice.json"
    config.write_text(json.dumps({"prices": {"gpt-4o-mini": {"input": 1_000_000, "output": 1_000_000}}}))
    # Slow answers: all twenty calls arrive while the first ones are still in flight.
    mock = procs.start_mock("--model", "gpt-4o-mini", "--latency-ms", "2000")
    gateway = procs.start_gateway(upstream=mock.url, args=[
        "--config", str(config), "--database", database, "--master-key", MASTER, "--upstream-kind", "openai",
        "--cache-ttl", "0"])
    admin = {"authorization": f"Bearer {MASTER}"}

    def body(max_tokens: int) -> bytes:
        return json.dumps({"model": "gpt-4o-mini", "max_tokens": max_tokens,
                           "messages": [{"role": "user", "content": f"budget {nonce()}"}]}).encode()

    # What one call really uses, through the master key (no budget).
    probe = httpx.post(f"{gateway.v1}/chat/completions", content=body(64), headers={**admin, "content-type": "application/json"},
                       timeout=30).json()["usage"]
    sample = body(probe["completion_tokens"])
    # The gateway reserves a token per 3 bytes of body plus max_tokens: at least what the call uses.
    worst = len(sample) // 3 + 1 + probe["completion_tokens"]
    actual = probe["prompt_tokens"] + probe["completion_tokens"]
    assert worst >= actual
    # A budget for three calls at their worst case.
    budget = 3 * worst
    name = f"r-{nonce()[:6]}"
    done = procs.run_sluice("keys", "create", "--name", name, "--budget", str(budget), "--database", database)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}

    def call(_: int) -> int:
        return httpx.post(f"{gateway.v1}/chat/completions", content=body(probe["completion_tokens"]), headers=headers,
                          timeout=30).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(call, range(20)))
    assert set(statuses) <= {200, 403}, statuses
    # Three worst cases fit the budget at once; the rest are refused before they are sent.
    assert statuses.count(200) == 3, statuses

    # The spend stays within the budget: the overshoot is at most the settlement error, here none.
    def spent():
        keys = json.loads(procs.run_sluice("keys", "list", "--json", "--database", database).stdout)
        key = next(k for k in keys if k["name"] == name)
        return key["spent_usd"] >= 3 * actual - 1e-9 and key["spent_usd"]
    assert wait_until(spent, "the three calls' spend") <= budget
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert "sluice_budget_reservations_refused_total 17" in metrics


@pytest.mark.skipif(not POSTGRES, reason="needs SLUICE_TEST_POSTGRES_URL (scripts/start-postgres)")
def test_a_crashed_instances_reservations_expire(procs, tmp_path):
    config = tmp_path / "sluice.json"
    config.write_text(json.dumps({"prices": {"gpt-4o-mini": {"input": 1_000_000, "output": 1_000_000}}}))
    # Answers slower than upstream-timeout: every call that is let through ends in a 504 and costs nothing.
    mock = procs.start_mock("--model", "gpt-4o-mini", "--latency-ms", "5000")
    # Reservations are held at most cache-coalesce-wait + upstream-queue-timeout + upstream-timeout + 10 s = 15 s.
    args = ["--config", str(config), "--database", POSTGRES, "--master-key", MASTER, "--upstream-kind", "openai",
            "--cache-ttl", "0", "--upstream-timeout", "3s", "--upstream-queue-timeout", "1s", "--cache-coalesce-wait", "1s"]
    first = procs.start_gateway(upstream=mock.url, args=args)
    second = procs.start_gateway(upstream=mock.url, args=args)

    def body(max_tokens: int) -> bytes:
        return json.dumps({"model": "gpt-4o-mini", "max_tokens": max_tokens,
                           "messages": [{"role": "user", "content": "held"}]}).encode()

    # The held call's worst case is the whole budget; a probe's is a fraction of it.
    held_worst = len(body(100)) // 3 + 1 + 100
    name = f"c-{nonce()[:6]}"
    done = procs.run_sluice("keys", "create", "--name", name, "--budget", str(held_worst), "--database", POSTGRES)
    assert done.returncode == 0, done.stderr
    key_id = re.search(r"created key (\S+)", done.stderr).group(1)
    headers = {"authorization": f"Bearer {done.stdout.strip()}", "content-type": "application/json"}

    def call(gateway, max_tokens: int) -> int:
        return httpx.post(f"{gateway.v1}/chat/completions", content=body(max_tokens), headers=headers, timeout=30).status_code

    def published() -> int:
        done = subprocess.run(["psql", POSTGRES, "-tAc", f"SELECT COUNT(*) FROM budget_reservations WHERE key_id = '{key_id}'"],
                              capture_output=True, text=True, timeout=30)
        return int(done.stdout.strip() or 0)

    # A call in flight on the first instance holds the whole budget; once it is in the store the instance dies
    # with the call in flight, so nothing ever settles it.
    def held() -> None:
        try:
            call(first, 100)
        except httpx.HTTPError:
            pass  # the instance is killed under it

    threading.Thread(target=held, daemon=True).start()
    wait_until(published, "the first instance to publish its reservation")
    first.process.signal(signal.SIGKILL)
    first.process.wait()
    # The second instance counts it ...
    wait_until(lambda: call(second, 20) == 403, "the second instance to count the dead instance's reservation")
    refused_at = time.monotonic()
    # ... until it expires.
    wait_until(lambda: call(second, 20) != 403, "the dead instance's reservation to expire", deadline=40)
    assert time.monotonic() - refused_at < 20


@pytest.mark.skipif(not POSTGRES, reason="needs SLUICE_TEST_POSTGRES_URL (scripts/start-postgres)")
def test_twenty_concurrent_calls_over_two_instances_stay_within_the_stated_bound(procs, tmp_path):
    """Spread over two instances, a burst can overshoot by what the other instance reserved since its last poll
    (the README's bound): at most three worst cases per instance here. Once the reservations are published, both
    instances refuse the key."""
    config = tmp_path / "sluice.json"
    config.write_text(json.dumps({"prices": {"gpt-4o-mini": {"input": 1_000_000, "output": 1_000_000}}}))
    mock = procs.start_mock("--model", "gpt-4o-mini", "--latency-ms", "2000")
    args = ["--config", str(config), "--database", POSTGRES, "--master-key", MASTER, "--upstream-kind", "openai", "--cache-ttl", "0"]
    gateways = [procs.start_gateway(upstream=mock.url, args=args) for _ in range(2)]

    def body() -> bytes:
        return json.dumps({"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": f"two {nonce()}"}]}).encode()

    worst = len(body()) // 3 + 1 + 20
    name = f"t-{nonce()[:6]}"
    done = procs.run_sluice("keys", "create", "--name", name, "--budget", str(3 * worst), "--database", POSTGRES)
    assert done.returncode == 0, done.stderr
    headers = {"authorization": f"Bearer {done.stdout.strip()}", "content-type": "application/json"}
    # Both instances must know the key before the burst.
    for gateway in gateways:
        wait_until(lambda: httpx.get(f"{gateway.v1}/models", headers=headers, timeout=10).status_code == 200, "the key")

    def call(i: int) -> int:
        return httpx.post(f"{gateways[i % 2].v1}/chat/completions", content=body(), headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(call, range(20)))
    assert set(statuses) <= {200, 403}, statuses
    assert 3 <= statuses.count(200) <= 3 * len(gateways), statuses
    # With the calls settled and published, the budget is spent everywhere.
    for i in range(2):
        wait_until(lambda: call(i) == 403, f"instance {i} to refuse the spent key")
