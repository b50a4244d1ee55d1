"""Graceful shutdown, metrics and structured logs."""

from __future__ import annotations

import json
import os
import re
import signal
import stat

import httpx

from e2e_support import chat_body, expected_reply, iter_sse, nonce, wait_until

SENTINEL = "sk-secret-sentinel"


def test_graceful_shutdown_drains_stream(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url)
    prompt = f"[[slow]] one two three four five six seven eight nine ten eleven twelve thirteen {nonce()}"
    assert len(prompt.split()) == 15
    content, events = [], []
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        with client.stream("POST", "/v1/chat/completions", json=chat_body(prompt, stream=True)) as r:
            assert r.status_code == 200
            signalled = False
            for event in iter_sse(r.iter_lines()):
                events.append(event)
                if event.event is None and event.data != "[DONE]":
                    for choice in event.json().get("choices", []):
                        content.append(choice.get("delta", {}).get("content") or "")
                if content and any(content) and not signalled:
                    gw.process.signal(signal.SIGTERM)
                    signalled = True
            assert signalled, f"no content before the stream ended: {events}"
    assert "".join(content) == expected_reply(prompt), "the stream was cut short by shutdown"
    assert events[-1].data == "[DONE]", f"stream did not end with [DONE]: {events[-3:]}"
    assert gw.process.wait() == 0, gw.process.logs()


def test_sigterm_when_idle_exits_zero(procs, mock):
    gw = procs.start_gateway(upstream=mock.url)
    gw.process.signal(signal.SIGTERM)
    assert gw.process.wait() == 0, gw.process.logs()


def test_sigint_exits_zero(procs, mock):
    gw = procs.start_gateway(upstream=mock.url)
    gw.process.signal(signal.SIGINT)
    assert gw.process.wait() == 0, gw.process.logs()


def _metric_value(text: str, name: str, label_filter: str = "") -> float:
    """Sum of the samples of `name` whose label set contains `label_filter`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if m and label_filter in (m.group(1) or ""):
            total += float(m.group(2))
    return total


def test_metrics_after_traffic(http):
    assert http.post("/v1/chat/completions", json=chat_body(f"metrics {nonce()}")).status_code == 200
    with http.stream("POST", "/v1/chat/completions", json=chat_body(f"metrics stream {nonce()}", stream=True)) as r:
        assert r.status_code == 200
        r.read()
    assert http.post("/v1/chat/completions", json=chat_body(f"[[error]] {nonce()}")).status_code == 502

    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    for name in (
        "sluice_http_requests_total",
        "sluice_http_request_duration_seconds",
        "sluice_upstream_errors_total",
        "sluice_streams_in_flight",
    ):
        assert re.search(rf"^{name}(_bucket|_sum|_count)?[{{ ]", r.text, re.M), f"{name} missing:\n{r.text}"

    # Counters are updated as responses finish, which may trail the client by a moment: poll.
    def settled():
        text = http.get("/metrics").text
        return (
            _metric_value(text, "sluice_http_requests_total") >= 3
            and _metric_value(text, "sluice_upstream_errors_total") >= 1
            and _metric_value(text, "sluice_streams_in_flight") == 0
        )

    wait_until(settled, "requests_total >= 3, upstream_errors_total >= 1 and streams_in_flight == 0",
               on_timeout=lambda: http.get("/metrics").text)


def test_log_file_mode_json_request_id_no_secrets(procs, mock, tmp_path):
    log_path = tmp_path / "sluice.log"
    gw = procs.start_gateway(upstream=mock.url, args=["--log-file", str(log_path), "--log-level", "debug"])
    headers = {"Authorization": f"Bearer {SENTINEL}", "X-Request-ID": "test-log-123"}
    with httpx.Client(base_url=gw.url, timeout=30, headers=headers) as client:
        assert client.post("/v1/chat/completions", json=chat_body(f"log me {nonce()}")).status_code == 200
        assert client.post("/v1/chat/completions", content=b"{not json").status_code == 400
    gw.process.signal(signal.SIGTERM)
    assert gw.process.wait() == 0, gw.process.logs()

    assert log_path.exists(), "log file was not created"
    mode = stat.S_IMODE(os.stat(log_path).st_mode)
    assert mode == 0o600, f"log file mode is {oct(mode)}"
    text = log_path.read_text()
    assert SENTINEL not in text, "the bearer token leaked into the log file"
    assert SENTINEL not in gw.process.stdout() + gw.process.stderr(), "the bearer token leaked into the output"
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"log line {number} is not JSON: {line!r}") from None
    assert any(rec.get("request_id") == "test-log-123" for rec in records), "no log line carries the request ID"
    about_requests = [rec for rec in records if "path" in rec or "status" in rec]
    assert about_requests, "no request log lines"
    missing = [rec for rec in about_requests if not rec.get("request_id")]
    assert not missing, f"request log lines without request_id: {missing}"


def test_stdout_logs_are_json_with_request_id(procs, mock):
    """Without --log-file, JSON log lines go to stdout and carry the request ID."""
    gw = procs.start_gateway(upstream=mock.url)
    r = httpx.get(f"{gw.url}/v1/models", headers={"X-Request-ID": "test-stdout-1"}, timeout=30)
    assert r.status_code == 200

    def logged():
        for line in gw.process.stdout().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("request_id") == "test-stdout-1":
                return rec
        return None

    wait_until(logged, "a stdout JSON log line with request_id test-stdout-1",
               on_timeout=gw.process.logs)
