"""The black-box security probe's findings, each replayed against the real binary.

Connection-level limits and input validation have their own files (test_connection_limits.py,
test_input_validation.py); this file holds the path, masking, file-mode, limit-header, readiness,
non-reading-client and shutdown findings.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat

import httpx
import pytest

from e2e_support import chat_body, iter_sse, nonce, wait_until

MASTER = "sk-master-probe-secret"


# --- Finding 1: a path that begins with // skipped authentication --------------------------------


@pytest.fixture(scope="module")
def guarded(module_procs):
    mock = module_procs.start_mock()
    return module_procs.start_gateway(upstream=mock.url, args=["--master-key", MASTER, "--auth", "required"])


def raw_request(port: int, method: str, target: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
    """Sends the request target exactly as given (httpx would normalise it) and returns status and body."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


@pytest.mark.parametrize(
    "method,target,body",
    [
        ("GET", "//admin/config", b""),
        ("GET", "//admin/keys", b""),
        ("GET", "///admin/usage", b""),
        ("POST", "//admin/keys", b'{"name":"x"}'),
        ("DELETE", "//admin/keys/key_x", b""),
        ("POST", "//v1/chat/completions", json.dumps(chat_body("hi")).encode()),
        ("POST", "//api/chat", b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}'),
        ("GET", "//v1/models", b""),
        ("GET", "/admin//keys", b""),
        ("GET", "/./admin/keys", b""),
        ("GET", "/v1/../admin/keys", b""),
        ("GET", "/%2Fadmin/keys", b""),
        ("GET", "/ADMIN/keys", b""),
        ("GET", "/admin%2fkeys", b""),
    ],
)
def test_no_spelling_of_a_guarded_path_skips_authentication(guarded, method, target, body):
    status, answer = raw_request(guarded.port, method, target, body)
    assert status in (400, 401, 404), f"{method} {target} answered {status}: {answer[:200]!r}"


def test_a_sloppy_base_url_still_works_with_a_key(guarded):
    status, answer = raw_request(guarded.port, "GET", "//admin/keys", headers={"Authorization": f"Bearer {MASTER}"})
    assert status == 200, answer


# --- Finding 8: credentials in URLs are masked everywhere --------------------------------------


def test_check_config_masks_every_credential_form(procs, tmp_path):
    config = tmp_path / "sluice.yaml"
    config.write_text(
        "upstreams:\n"
        "  - name: local\n"
        "    url: http://admin:upstream-pass-1@127.0.0.1:11434\n"
    )
    done = procs.run_sluice(
        "check-config", "--config", config,
        "--database", "postgres://sluice:p@ss-2@db.invalid:5432/sluice?sslmode=disable&password=query-pass-3",
    )
    assert done.returncode == 0, done.stderr
    for secret in ("upstream-pass-1", "p@ss-2", "ss-2", "query-pass-3"):
        assert secret not in done.stdout, f"{secret} shown by check-config: {done.stdout}"
    summary = json.loads(done.stdout)
    assert summary["upstreams"][0]["url"] == "http://admin:***@127.0.0.1:11434"


def test_admin_config_masks_upstream_userinfo(procs):
    mock = procs.start_mock()
    url = mock.url.replace("http://", "http://admin:upstream-secret-9@")
    gw = procs.start_gateway(upstream=url, args=["--master-key", MASTER])
    r = httpx.get(f"{gw.url}/admin/config", headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 200
    assert "upstream-secret-9" not in r.text


# --- Finding 10: an existing database file is tightened to 0600 --------------------------------


def test_existing_world_readable_database_is_made_owner_only(procs, tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    for name in (path, tmp_path / "old.db-wal"):
        name.touch()
        os.chmod(name, 0o644)
    mock = procs.start_mock()
    procs.start_gateway(upstream=mock.url, args=["--database", f"sqlite:{path}"])
    for name in (path, tmp_path / "old.db-wal", tmp_path / "old.db-shm"):
        if name.exists():
            assert stat.S_IMODE(name.stat().st_mode) == 0o600, f"{name} is {oct(name.stat().st_mode)}"


# --- Finding 12: limit headers on per-IP 429s; /readyz answers from the prober's state -----------


def test_ip_limit_429_carries_rate_limit_headers(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--ip-rate-limit-rpm", "2"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        answers = [client.get("/v1/models") for _ in range(3)]
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-reset-requests" in refused.headers
    assert "retry-after" in refused.headers


def test_readyz_does_not_probe_upstreams_per_call(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--probe-interval", "1h"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for _ in range(200):
            assert client.get("/readyz").status_code == 200
    probes = sum(count for path, count in mock.stats()["requests"].items() if path in ("/", "/api/version", "/api/tags"))
    assert probes <= 2, mock.stats()


# --- Finding 5: a client that stops reading frees its upstream slot -------------------------------


def test_a_client_that_stops_reading_is_cut_and_its_upstream_call_cancelled(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--client-write-timeout", "1s"])
    # A long answer (the mock repeats it 500 times) fills every buffer between the two: long words, so that it is
    # many megabytes without being many chunks, and a small receive buffer on this side.
    prompt = "[[flood]] " + " ".join(["w" * 1000] * 40) + " " + nonce()
    body = json.dumps(chat_body(prompt, stream=True)).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", gw.port))
    try:
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(request + body)
        # Never read: the gateway must give up on this client, cancel the upstream stream and free its slot.
        def cut_and_freed():
            metrics = httpx.get(f"{gw.url}/metrics").text
            return (
                'sluice_client_connections_closed_total{reason="write_timeout"} 1' in metrics
                and 'sluice_upstream_in_flight{upstream="default"} 0' in metrics
                and "sluice_streams_in_flight 0" in metrics
            )

        wait_until(cut_and_freed, "the write-timeout close to be counted and the upstream slot freed")
        wait_until(lambda: mock.stats()["streams_cancelled"] + mock.stats()["streams_completed"] >= 1,
                   "the upstream to see its stream end", on_timeout=lambda: str(mock.stats()))
    finally:
        sock.close()
    # The gateway still serves.
    assert httpx.post(f"{gw.url}/v1/chat/completions", json=chat_body("hi " + nonce()), timeout=30).status_code == 200


# --- Finding 7: streams that outlive the shutdown grace end cleanly and are recorded ---------------


def test_streams_cut_by_shutdown_get_an_error_event_and_a_record(procs, tmp_path):
    database = tmp_path / "drain.db"
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--shutdown-grace", "2s", "--database", f"sqlite:{database}"])
    # 100 ms a word: about 20 s of answer, far beyond the grace.
    prompt = "[[slow]] " + " ".join(["w"] * 200) + " " + nonce()
    events = []
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        with client.stream("POST", "/v1/chat/completions", json=chat_body(prompt, stream=True)) as r:
            assert r.status_code == 200
            for event in iter_sse(r.iter_lines()):
                events.append(event)
                if len(events) == 2:
                    gw.process.signal(signal.SIGTERM)
    assert gw.process.wait() == 0, gw.process.logs()
    assert events[-1].data != "[DONE]", "a stream cut by shutdown must not look complete"
    error = json.loads(events[-1].data)
    assert error["error"]["code"] == "shutdown", events[-3:]
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT error_code FROM usage_records WHERE route = '/v1/chat/completions'").fetchall()
    assert rows == [("shutdown",)], rows


# --- Finding 6: answers held in memory are bounded over all requests --------------------------------


def test_an_answer_past_max_buffered_bytes_is_shed_with_503(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--max-buffered-bytes", "4KiB", "--cache-ttl", "0"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        small = client.post("/v1/chat/completions", json=chat_body(f"short {nonce()}"))
        assert small.status_code == 200
        # The mock echoes the prompt: a 20 KB answer cannot be held under a 4 KiB bound.
        big = client.post("/v1/chat/completions", json=chat_body("x" * 20_000 + " " + nonce()))
        assert big.status_code == 503, big.text
        assert big.json()["error"]["code"] == "gateway_overloaded"
        assert "retry-after" in big.headers
        # Nothing stays charged: the next small answer passes.
        assert client.post("/v1/chat/completions", json=chat_body(f"short {nonce()}")).status_code == 200
