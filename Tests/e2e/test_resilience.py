"""Load shedding, the background prober, the configurable breaker, and one usage record per request
whatever happened to it."""

from __future__ import annotations

import signal
import sqlite3
import uuid

import httpx

from e2e_support import (
    CHAT_MODEL,
    assert_openai_error,
    chat_body,
    iter_sse,
    nonce,
    wait_until,
)
from test_routing import chat, generated, upstream_states, write_config

MASTER = "master-" + "b" * 32


def metric(client: httpx.Client, line_prefix: str) -> float | None:
    """The value of the first /metrics line starting with `line_prefix` (name plus labels)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    return None


def slow_stream_prompt() -> str:
    # [[slow]] spaces chunks 100 ms apart; many words keep the stream open for seconds.
    return "[[slow]] " + " ".join(f"w{i}" for i in range(80)) + f" {nonce()}"


def test_queue_timeout_gives_503_with_retry_after(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(
        upstream=mock.url,
        args=["--upstream-max-inflight", "1", "--upstream-queue", "1", "--upstream-queue-timeout", "300ms",
              "--cache-ttl", "0", "--probe-interval", "0"],
    )
    with httpx.Client(base_url=gw.url, timeout=30) as client, httpx.Client(base_url=gw.url, timeout=30) as other:
        with client.stream("POST", "/v1/chat/completions", json=chat_body(slow_stream_prompt(), stream=True)) as held:
            assert held.status_code == 200
            # Kept referenced: a dropped line iterator would close the stream.
            events = iter_sse(held.iter_lines())
            first = next(events)
            assert first.json()["choices"], first
            # The stream has started and holds the only slot until it ends.
            wait_until(lambda: metric(other, 'sluice_upstream_in_flight{upstream="default"}') == 1,
                       "the streaming request to hold the upstream's only slot")
            r = other.post("/v1/chat/completions", json=chat_body(f"queued {nonce()}"))
            assert_openai_error(r, 503, code="upstream_overloaded")
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers.get("x-request-id")
        # Leaving the block dropped the stream: its slot comes back and requests pass again.
        wait_until(lambda: metric(other, 'sluice_upstream_in_flight{upstream="default"}') == 0,
                   "the dropped stream to give its slot back")
        assert chat(other).status_code == 200
        assert metric(other, 'sluice_upstream_shed_total{reason="queue_timeout"}') == 1
        assert metric(other, "sluice_upstream_queue_depth") == 0


def test_full_queue_sheds_at_once(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(
        upstream=mock.url,
        args=["--upstream-max-inflight", "1", "--upstream-queue", "0", "--cache-ttl", "0", "--probe-interval", "0"],
    )
    with httpx.Client(base_url=gw.url, timeout=30) as client, httpx.Client(base_url=gw.url, timeout=30) as other:
        with client.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "stream": True,
                                                      "messages": [{"role": "user", "content": slow_stream_prompt()}]}) as held:
            assert held.status_code == 200
            lines = held.iter_lines()
            assert next(lines)
            wait_until(lambda: metric(other, 'sluice_upstream_in_flight{upstream="default"}') == 1,
                       "the native stream to hold the slot")
            r = other.post("/v1/chat/completions", json=chat_body(f"shed {nonce()}"))
            assert_openai_error(r, 503, code="upstream_overloaded")
        assert metric(other, 'sluice_upstream_shed_total{reason="queue_full"}') == 1


def test_prober_opens_and_closes_the_breaker_without_traffic(procs, tmp_path):
    a, b = procs.start_mock(), procs.start_mock()
    config = write_config(tmp_path, [("a", a.url, []), ("b", b.url, [])])
    gw = procs.start_gateway(args=["--config", config, "--probe-interval", "100ms", "--breaker-failures", "2"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        assert upstream_states(client) == {"a": "closed", "b": "closed"}
        a.process.stop()
        wait_until(lambda: upstream_states(client)["a"] == "open", "the prober to open a's breaker")
        assert upstream_states(client)["b"] == "closed"
        assert metric(client, 'sluice_upstream_probes_total{upstream="a",result="failed"}') >= 2
        procs.start_mock(port=a.port)
        wait_until(lambda: upstream_states(client)["a"] == "closed", "the prober to close a's breaker once it is back")
        # No client request was needed for either change.
        assert "/v1/chat/completions" not in client.get("/metrics").text


def test_breaker_threshold_is_configurable(procs, tmp_path):
    def run(threshold: int, failures: int) -> str:
        bad, good = procs.start_mock("--fail-status", "500"), procs.start_mock()
        config = write_config(tmp_path, [("bad", bad.url, []), ("good", good.url, [])])
        gw = procs.start_gateway(args=["--config", config, "--breaker-failures", str(threshold), "--probe-interval", "0"])
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            for _ in range(200):
                if generated(bad) >= failures:
                    break
                assert chat(client).status_code == 200
            assert generated(bad) == failures
            return upstream_states(client)["bad"]

    assert run(threshold=1, failures=1) == "open"
    assert run(threshold=5, failures=3) == "closed"


def test_every_request_has_exactly_one_usage_record(procs, tmp_path):
    db = tmp_path / "usage.db"
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--database", f"sqlite:{db}", "--master-key", MASTER])
    admin = {"authorization": f"Bearer {MASTER}"}
    created = httpx.post(f"{gw.url}/admin/keys", json={"name": "limited", "rpm": 3}, headers=admin, timeout=10)
    assert created.status_code in (200, 201), created.text
    limited = {"authorization": f"Bearer {created.json()['key']}"}
    # A new key reaches the gateway's key directory within a second; this first accepted call uses one of the 3.
    wait_until(lambda: httpx.get(f"{gw.url}/v1/models", headers=limited, timeout=10).status_code == 200,
               "the new key to be accepted")
    sent: dict[str, int] = {}

    def send(client: httpx.Client, expected: int, body: dict, headers: dict = admin, path: str = "/v1/chat/completions",
             stream: bool = False) -> None:
        rid = "e2e-" + uuid.uuid4().hex
        h = {**headers, "x-request-id": rid}
        if stream:
            with client.stream("POST", path, json=body, headers=h) as r:
                assert r.status_code == expected
                r.read()
        else:
            r = client.post(path, json=body, headers=h)
            assert r.status_code == expected, r.text
        assert r.headers["x-request-id"] == rid
        sent[rid] = expected

    with httpx.Client(base_url=gw.url, timeout=30) as client:
        repeat = chat_body(f"repeat {nonce()}")
        for _ in range(3):
            send(client, 200, chat_body(nonce()))
            send(client, 200, chat_body(nonce(), stream=True), stream=True)
            send(client, 200, repeat)  # the second and third are cache hits
            send(client, 502, chat_body(f"[[error]] {nonce()}"))
            send(client, 200, chat_body(f"[[die]] {nonce()}", stream=True), stream=True)  # dies mid-stream
            send(client, 502, chat_body(f"[[die]] {nonce()}"))
            send(client, 404, chat_body(nonce(), model="no-such-model"))
            send(client, 401, chat_body(nonce()), headers={"authorization": "Bearer sk-sluice-" + "x" * 40})
            send(client, 400, {"model": CHAT_MODEL, "messages": "not a list"})
            send(client, 200, {"model": CHAT_MODEL, "stream": False,
                               "messages": [{"role": "user", "content": nonce()}]}, path="/api/chat")
        send(client, 200, chat_body(nonce()), headers=limited)
        send(client, 200, chat_body(nonce()), headers=limited)
        for _ in range(3):
            send(client, 429, chat_body(nonce()), headers=limited)
    # A graceful stop flushes whatever the writer still holds.
    gw.process.signal(signal.SIGTERM)
    assert gw.process.wait() == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT request_id, status FROM usage_records WHERE request_id LIKE 'e2e-%'").fetchall()
    seen: dict[str, list] = {}
    for rid, status in rows:
        seen.setdefault(rid, []).append(status)
    missing = set(sent) - set(seen)
    duplicated = {rid: s for rid, s in seen.items() if len(s) != 1}
    extra = set(seen) - set(sent)
    assert not missing and not duplicated and not extra, (missing, duplicated, extra)
    assert len(rows) == len(sent)
    statuses = sorted({s for s in sent.values()})
    assert statuses == [200, 400, 401, 404, 429, 502]
    # A stream that died mid-way was sent as 200 but is recorded with its error.
    for rid, expected in sent.items():
        if expected != 200:
            assert seen[rid] == [expected], (rid, seen[rid], expected)


def test_stalled_upstream_is_retried_on_another_before_the_first_byte(procs, tmp_path):
    # --latency-ms far beyond --upstream-timeout: the upstream accepts the request and then hangs.
    stalled, good = procs.start_mock("--latency-ms", "5000"), procs.start_mock()
    config = write_config(tmp_path, [("stalled", stalled.url, []), ("good", good.url, [])])
    gw = procs.start_gateway(args=["--config", config, "--upstream-timeout", "1s", "--probe-interval", "0"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for _ in range(20):
            if generated(stalled) >= 1:
                break
            assert chat(client).status_code == 200
        assert generated(stalled) >= 1, "the stalled upstream was never tried"
        # The request that met the stall was answered by the other upstream, so nothing failed.
        assert chat(client).status_code == 200
        assert metric(client, 'sluice_upstream_errors_total{upstream="stalled",code="upstream_timeout"}') >= 1
