"""Rate limits shared by several gateway instances on one PostgreSQL database, clients spread round-robin.

The README's scaling section states the bound these check: within any window of T seconds a limit L per minute
admits at most L + L*T/60 (what one exact token bucket admits) plus one request per instance (its first request
for a limit it holds no lease of); a token limit may also be exceeded by the tokens of the request that crosses
each instance's lease. While the store cannot be reached, each instance enforces limit / live instances."""

from __future__ import annotations

import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from e2e_support import OutageProxy, chat_body, nonce, wait_until

MASTER = "master-" + "d" * 32
POSTGRES = os.environ.get("SLUICE_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs SLUICE_TEST_POSTGRES_URL (scripts/start-postgres)")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def create_key(procs, *args: str) -> str:
    done = procs.run_sluice("keys", "create", "--name", f"shared-{nonce()[:8]}", *args, "--database", POSTGRES)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def start_instances(procs, count: int, *extra: str, database: str = POSTGRES):
    mock = procs.start_mock()
    return [procs.start_gateway(upstream=mock.url, args=["--database", database, "--master-key", MASTER, *extra])
            for _ in range(count)]


def round_robin(gateways, headers: dict, total: int, body=None, workers: int = 6) -> tuple[list[httpx.Response], float]:
    """Sends `total` chat requests, the i-th to instance i mod n, a few at a time; returns them and the seconds taken."""
    started = time.monotonic()

    def send(i: int) -> httpx.Response:
        return httpx.post(f"{gateways[i % len(gateways)].v1}/chat/completions", json=body or chat_body(nonce()),
                          headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        responses = list(pool.map(send, range(total)))
    return responses, time.monotonic() - started


def admitted(responses) -> int:
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 429}, statuses
    return sum(r.status_code == 200 for r in responses)


def bound(limit: int, seconds: float, instances: int) -> int:
    """What the README promises for a per-minute limit over a run of `seconds`."""
    return limit + int(limit * seconds / 60) + 1 + instances * min(5, max(1, limit // instances))


@pytest.mark.parametrize("instances", [2, 3])
def test_a_keys_requests_per_minute_hold_across_instances(procs, instances):
    gateways = start_instances(procs, instances)
    secret = create_key(procs, "--rpm", "60")
    responses, seconds = round_robin(gateways, {"authorization": f"Bearer {secret}"}, 150)
    count = admitted(responses)
    assert count <= bound(60, seconds, instances), (count, seconds)
    # Every instance admitted some: the limit is shared out, not held by whoever came first.
    assert count >= 40, count
    for i in range(instances):
        assert any(r.status_code == 200 for r in responses[i::instances])
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-limit-requests"] == "60"
    assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize("instances", [2, 3])
def test_a_keys_tokens_per_minute_hold_across_instances(procs, instances):
    gateways = start_instances(procs, instances)
    secret = create_key(procs, "--tpm", "1500")
    # One prompt length, so every answer costs the same; the mock echoes the prompt.
    prompt = "x" * 40
    responses, seconds = round_robin(gateways, {"authorization": f"Bearer {secret}"}, 150,
                                     body=chat_body(prompt), workers=3)
    count = admitted(responses)
    per_request = max(r.json()["usage"]["total_tokens"] for r in responses if r.status_code == 200)
    spent = count * per_request
    # The exact bucket, plus per instance its first-contact request and the request that crosses its lease, plus
    # the requests in flight (workers) when a lease ran out.
    allowed = 1500 + int(1500 * seconds / 60) + (2 * instances + 3) * per_request
    assert spent <= allowed, (count, per_request, seconds)
    assert spent >= 1500 / 2, (count, per_request)


def test_the_per_ip_limit_holds_across_instances(procs):
    gateways = start_instances(procs, 3, "--ip-rate-limit-rpm", "30", "--trusted-proxies", "127.0.0.1")
    # A client address of its own, so earlier runs against the same database do not share its bucket.
    client_ip = "10." + ".".join(str(random.randrange(256)) for _ in range(3))
    headers = {"authorization": f"Bearer {MASTER}", "x-forwarded-for": client_ip}
    responses, seconds = round_robin(gateways, headers, 90)
    count = admitted(responses)
    assert 20 <= count <= bound(30, seconds, 3), (count, seconds)
    # Another address has its own limit.
    other = {"authorization": f"Bearer {MASTER}", "x-forwarded-for": client_ip + "0"}
    assert httpx.post(f"{gateways[0].v1}/chat/completions", json=chat_body(nonce()), headers=other,
                      timeout=30).status_code == 200


def test_a_store_outage_falls_back_to_a_share_per_instance_and_back(procs):
    direct_port = int(re.search(r"@[^:/]+:(\d+)/", POSTGRES).group(1))
    proxy = OutageProxy(direct_port)
    proxy.up()
    # An operation gives up on the store after connect_timeout: the fallback starts within a second.
    proxied = POSTGRES.replace(f":{direct_port}/", f":{proxy.port}/", 1)
    proxied += ("&" if "?" in proxied else "?") + "connect_timeout=1"
    try:
        gateways = start_instances(procs, 3, database=proxied)
        secret = create_key(procs, "--rpm", "60")
        headers = {"authorization": f"Bearer {secret}"}

        def metrics(gateway) -> str:
            return httpx.get(f"{gateway.url}/metrics", timeout=10).text

        # Every instance has met the key and counts the three live instances.
        started = time.monotonic()
        exchanged = [metric(metrics(g), 'sluice_rate_limit_exchanges_total{result="ok"}') for g in gateways]
        warm, _ = round_robin(gateways, headers, 3)
        # Cut the store only once each instance has exchanged the key's first lease: a limit first met during an
        # outage starts with a whole limit / N of its own (see the README).
        for gateway, before in zip(gateways, exchanged):
            wait_until(lambda: metric(metrics(gateway), 'sluice_rate_limit_exchanges_total{result="ok"}') >= before + 2,
                       "a lease exchange after the warm-up")
        # Used again just before the cut: waiting out two exchanges can leave a lease idle long enough to be handed
        # back, and a handed-back limit starts its fallback with a whole share (the README's other, wider case), which
        # this test's bound does not cover.
        fresh, _ = round_robin(gateways, headers, 3)
        warm = warm + fresh
        proxy.down()
        for gateway in gateways:
            wait_until(lambda: metric(metrics(gateway), "sluice_rate_limit_fallback") == 1, "the fallback")
            assert metric(metrics(gateway), "sluice_rate_limit_fallbacks_total") == 1
        # limit / live instances: each goes on with what it still holds of its lease, refilled at 20 a minute.
        during, seconds = round_robin(gateways, headers, 120)
        count = admitted(during)
        assert 1 <= count <= 60 - admitted(warm) + 3 * (int(20 * seconds / 60) + 1), (count, seconds)

        proxy.up()
        for gateway in gateways:
            wait_until(lambda: metric(metrics(gateway), "sluice_rate_limit_fallback") == 0, "shared limits again")
        # What the instances admitted on their own was charged to the shared bucket: over the whole run, outage
        # included, the key got no more than the shared bound plus the README's outage allowance of one share
        # (limit / N) taken at recovery before the other instances' charges arrive.
        after, _ = round_robin(gateways, headers, 60)
        total = admitted(warm) + count + admitted(after)
        elapsed = time.monotonic() - started
        assert total <= bound(60, elapsed, 3) + 20, (admitted(warm), [admitted(during[i::3]) for i in range(3)],
                                                     [admitted(after[i::3]) for i in range(3)], elapsed)
    finally:
        proxy.down()


def create_team(procs, *args: str, database: str = POSTGRES) -> str:
    name = f"team-{nonce()[:8]}"
    done = procs.run_sluice("teams", "create", name, *args, "--database", database)
    assert done.returncode == 0, done.stderr
    return name


def test_a_teams_limit_holds_across_its_keys_and_instances(procs):
    gateways = start_instances(procs, 3)
    team = create_team(procs, "--rpm", "30")
    # Each key alone could make 60 a minute; together they get the team's 30.
    secrets = [create_key(procs, "--rpm", "60", "--team", team) for _ in range(3)]
    started = time.monotonic()
    statuses = []
    for secret in secrets:
        responses, _ = round_robin(gateways, {"authorization": f"Bearer {secret}"}, 30)
        statuses += responses
    count = admitted(statuses)
    assert count <= bound(30, time.monotonic() - started, 3), count
    assert count >= 20, count
    refused = next(r for r in statuses if r.status_code == 429)
    assert "team" in refused.json()["error"]["message"]


def test_a_limit_used_slower_than_its_lease_lasts_is_never_refused_below_its_rate(procs):
    """One request a second on a 600-a-minute key: each finds its instance's lease handed back as idle and meets
    the limit again, so none is refused (it used to be refused for a minute after the first)."""
    gateways = start_instances(procs, 2)
    headers = {"authorization": f"Bearer {create_key(procs, '--rpm', '600')}"}
    statuses = []
    for i in range(6):
        statuses.append(httpx.post(f"{gateways[i % 2].v1}/chat/completions", json=chat_body(nonce()), headers=headers,
                                   timeout=30).status_code)
        time.sleep(1)  # the pace under test, longer than two exchanges: not a wait for a condition
    assert statuses == [200] * 6, statuses
