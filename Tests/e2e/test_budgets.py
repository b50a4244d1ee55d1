"""Budget reservations: concurrent calls on an almost-spent budget are held to it by reserving each call's worst
case before it is sent, on both stores."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx

from e2e_support import nonce, wait_until

MASTER = "master-" + "f" * 32


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
