"""Client connection limits: header, body and idle timeouts, the connection cap, framing errors, early answers.

Each gateway here runs with one-second client timeouts so the tests take seconds; the bounds checked allow
a few seconds of slack for a loaded machine. Raw sockets are used where a client library would hide what
the test is about (a trickled head, a stalled body, an HTTP/1.0 request, a malformed chunk size).
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
import urllib.error
import urllib.request
import uuid

import httpx
import pytest

from e2e_support import chat_body, wait_until

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.0
# How much later than its timeout a close may come on a loaded machine.
SLACK = 4.0


@pytest.fixture(scope="module")
def limited(module_procs, mock):
    """A gateway with one-second client timeouts and a 64 KiB body limit."""
    return module_procs.start_gateway(
        upstream=mock.url,
        args=[
            "--client-header-timeout", f"{HEADER_TIMEOUT}s",
            "--client-body-timeout", f"{BODY_TIMEOUT}s",
            "--client-idle-timeout", f"{IDLE_TIMEOUT}s",
            "--max-body-bytes", "64KiB",
        ],
    )


def connect(gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=10)


def read_until_closed(sock: socket.socket, deadline: float, trickle: bytes = b"") -> tuple[bytes, bool]:
    """Everything the server sends until it closes or `deadline` (monotonic) passes; True when it closed.

    With `trickle`, those bytes are sent every 0.2 s while the server says nothing (a slowloris client).
    """
    data = b""
    while time.monotonic() < deadline:
        wait = min(0.2, max(0.0, deadline - time.monotonic()))
        readable, _, _ = select.select([sock], [], [], 0 if trickle else wait)
        if not readable and trickle:
            try:
                sock.sendall(trickle)
            except OSError:
                pass  # the server closed; the read below sees it
            readable, _, _ = select.select([sock], [], [], wait)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return data, True
            if not chunk:
                return data, True
            data += chunk
    return data, False


def parse_response(data: bytes) -> tuple[int, dict, bytes]:
    """Status, lower-cased headers and body of the first response in `data`."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return status, headers, rest[:length]


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """One whole response from a kept-alive connection."""
    data = b""
    while True:
        if b"\r\n\r\n" in data:
            status, headers, body = parse_response(data)
            if len(body) >= int(headers.get("content-length", "0")):
                return status, headers, body
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole answer: {data[:200]!r}"
        data += chunk


def assert_error_json(body: bytes, code: str) -> None:
    error = json.loads(body)["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error", error
    assert error["param"] is None, error
    assert error["code"] == code, error


def metric(gateway, name: str, label_filter: str = "") -> float:
    """Sum of the samples of `name` whose label set contains `label_filter`."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if m and label_filter in (m.group(1) or ""):
            total += float(m.group(2))
    return total


def log_records(gateway) -> list[dict]:
    records = []
    for line in gateway.process.stdout().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def closed_reason_logged(gateway, reason: str):
    return [r for r in log_records(gateway) if r.get("msg") == "client connection closed" and r.get("reason") == reason]


def test_header_trickle_gets_408_and_is_closed(limited):
    before = metric(limited, "sluice_client_connections_closed_total", 'reason="header_timeout"')
    with connect(limited) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\n")
        data, closed = read_until_closed(sock, start + HEADER_TIMEOUT + SLACK, trickle=b"X-Trickle: 1\r\n")
        elapsed = time.monotonic() - start
    assert closed, f"the trickling connection was still open after {elapsed:.1f}s (got {data[:200]!r})"
    status, headers, body = parse_response(data)
    assert status == 408
    assert headers.get("connection") == "close"
    assert_error_json(body, "request_timeout")
    assert elapsed >= HEADER_TIMEOUT * 0.9, f"closed after {elapsed:.2f}s, before the header timeout"
    wait_until(lambda: metric(limited, "sluice_client_connections_closed_total", 'reason="header_timeout"') > before,
               "header_timeout counted in /metrics")
    wait_until(lambda: closed_reason_logged(limited, "header_timeout"), "a JSON log line for the header timeout")


def test_silent_connection_gets_408_after_the_header_timeout(limited):
    with connect(limited) as sock:
        start = time.monotonic()
        data, closed = read_until_closed(sock, start + HEADER_TIMEOUT + SLACK)
    assert closed and parse_response(data)[0] == 408


def test_stalled_body_gets_408_and_is_closed(limited):
    before = metric(limited, "sluice_client_connections_closed_total", 'reason="body_timeout"')
    request_id = "slow-body-" + uuid.uuid4().hex[:8]
    with connect(limited) as sock:
        start = time.monotonic()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: " + request_id.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"model\""
        )
        data, closed = read_until_closed(sock, start + BODY_TIMEOUT + SLACK)
        elapsed = time.monotonic() - start
    assert closed, f"the stalled upload was still open after {elapsed:.1f}s"
    status, _, body = parse_response(data)
    assert status == 408
    assert_error_json(body, "request_timeout")
    assert elapsed >= BODY_TIMEOUT * 0.9
    wait_until(lambda: metric(limited, "sluice_client_connections_closed_total", 'reason="body_timeout"') > before,
               "body_timeout counted in /metrics")

    def access_line():
        return [r for r in log_records(limited)
                if r.get("request_id") == request_id and r.get("msg") == "request completed"]

    line = wait_until(access_line, "the access log line of the stalled request")[0]
    assert line["status"] == 408
    assert line["level"] == "info"


def test_slow_but_steady_body_is_not_cut(limited):
    """Pauses shorter than the body timeout are fine, even when the whole upload takes longer than it."""
    body = json.dumps(chat_body("steady " + uuid.uuid4().hex)).encode()
    pieces = [body[i:i + 8] for i in range(0, len(body), 8)][:6]
    rest = body[8 * len(pieces):]
    with connect(limited) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        for piece in pieces:  # 6 x 0.3 s: longer than the timeout in all, each gap well inside it
            sock.sendall(piece)
            time.sleep(0.3)
        sock.sendall(rest)
        data, closed = read_until_closed(sock, time.monotonic() + 15)
    assert closed
    assert parse_response(data)[0] == 200


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(limited):
    before = metric(limited, "sluice_client_connections_closed_total", 'reason="idle_timeout"')
    with connect(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n")
        assert read_response(sock)[0] == 200
        answered = time.monotonic()
        rest, closed = read_until_closed(sock, answered + IDLE_TIMEOUT + SLACK)
        elapsed = time.monotonic() - answered
    assert closed and rest == b"", f"idle connection not closed after {elapsed:.1f}s (got {rest[:100]!r})"
    assert elapsed >= IDLE_TIMEOUT * 0.9, f"closed {elapsed:.2f}s after the answer, before the idle timeout"
    wait_until(lambda: metric(limited, "sluice_client_connections_closed_total", 'reason="idle_timeout"') > before,
               "idle_timeout counted in /metrics")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n",
    ],
    ids=["http1.0", "connection-close"],
)
def test_request_without_keep_alive_is_closed_after_its_answer(gateway, request_bytes):
    """On the default gateway (75 s idle timeout), so only the missing keep-alive can explain the close."""
    with connect(gateway) as sock:
        start = time.monotonic()
        sock.sendall(request_bytes)
        data, closed = read_until_closed(sock, start + 5)
    assert closed, f"connection still open after the answer: {data[:300]!r}"
    status, headers, body = parse_response(data)
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    assert headers.get("connection") == "close"


def test_connections_over_the_cap_are_closed_until_silent_ones_time_out(procs, mock):
    cap = 4
    gw = procs.start_gateway(upstream=mock.url, args=["--max-connections", str(cap), "--client-header-timeout", "2s"])
    # Count from a known state: one kept-alive connection that sees itself as the only one open (the readiness
    # probe's connection may still be closing), then silent ones up to the cap.
    observer = connect(gw)
    silent = []
    try:
        def open_connections(expected: int) -> bool:
            observer.sendall(b"GET /metrics HTTP/1.1\r\nHost: sluice\r\n\r\n")
            _, _, text = read_response(observer)
            return re.search(rb"^sluice_client_connections_open %d(\.0)?$" % expected, text, re.M) is not None

        wait_until(lambda: open_connections(1), "the observer as the only open connection")
        silent = [connect(gw) for _ in range(cap - 1)]
        # Accepted connections are set up on several event loops: wait until all of them hold their place.
        wait_until(lambda: open_connections(cap), f"{cap} connections open")

        def refused() -> bool:
            with connect(gw) as extra:
                try:
                    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n")
                except OSError:
                    return True
                data, closed = read_until_closed(extra, time.monotonic() + 1)
                return closed and data == b""

        wait_until(refused, f"a connection beyond the {cap} open ones closed without an answer", deadline=1.5)
        # Once the silent connections hit the header timeout, their places are free again.
        wait_until(lambda: httpx.get(f"{gw.url}/healthz", timeout=2).status_code == 200,
                   "a normal request served after the silent connections timed out", deadline=10)
        for sock in silent:
            data, closed = read_until_closed(sock, time.monotonic() + 5)
            assert closed and parse_response(data)[0] == 408
    finally:
        for sock in [observer, *silent]:
            sock.close()
    assert metric(gw, "sluice_client_connections_closed_total", 'reason="max_connections"') >= 1
    assert metric(gw, "sluice_client_connections_closed_total", 'reason="header_timeout"') >= cap - 1
    # Only the /metrics request itself is open.
    wait_until(lambda: metric(gw, "sluice_client_connections_open") == 1, "the open-connections gauge back to 1")
    refusals = closed_reason_logged(gw, "max_connections")
    assert refusals and refusals[0]["level"] == "warning"
    assert refusals[0]["max_connections"] == cap


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 21 + b"\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["xchunked", "21-digit-chunk-size"],
)
def test_malformed_framing_is_400_json_and_closes(limited, request_bytes):
    errors_before = metric(limited, "sluice_http_requests_total", 'status="500"')
    with connect(limited) as sock:
        sock.sendall(request_bytes)
        data, closed = read_until_closed(sock, time.monotonic() + 5)
    assert data, "no answer to a malformed request"
    status, headers, body = parse_response(data)
    assert status == 400, data[:300]
    assert headers.get("content-type") == "application/json"
    assert_error_json(body, "malformed_request")
    assert closed, "the connection stayed open after a framing error"
    assert metric(limited, "sluice_http_requests_total", 'status="500"') == errors_before


def test_client_leaving_mid_body_is_499_at_info_level(limited):
    request_id = "gone-" + uuid.uuid4().hex[:8]
    with connect(limited) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: " + request_id.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"model\": \"llama3.2\""
        )
    # The socket is closed with 980 bytes of body missing.

    def access_line():
        return [r for r in log_records(limited)
                if r.get("request_id") == request_id and r.get("msg") == "request completed"]

    line = wait_until(access_line, "the access log line of the abandoned request",
                      on_timeout=limited.process.logs)[0]
    assert line["status"] == 499
    mine = [r for r in log_records(limited) if r.get("request_id") == request_id]
    assert not [r for r in mine if r["level"] in ("error", "critical")], mine
    assert metric(limited, "sluice_http_requests_total", 'status="499"') >= 1


def test_client_writing_an_oversized_body_before_reading_gets_the_413(limited):
    """urllib sends the whole body (and `Connection: close`) before it reads anything."""
    body = b"x" * (16 * 1024 * 1024)  # far beyond the 64 KiB limit and what socket buffers hold
    request = urllib.request.Request(f"{limited.url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 413
    assert_error_json(info.value.read(), "request_too_large")


def test_pooled_client_keeps_working_after_an_early_answer(limited):
    """A connection that closes after an answer sent before the body was read says so in that answer
    (`Connection: close`), so a pooling client (httpx) does not send its next request on it."""
    with httpx.Client(base_url=limited.url, timeout=10) as client:
        for _ in range(3):
            r = client.post("/v1/chat/completions", content=b"x" * (4 * 1024 * 1024),
                            headers={"Content-Type": "application/json"})
            assert r.status_code == 413
            assert client.get("/healthz").status_code == 200
