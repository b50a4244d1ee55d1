"""What clients see when the upstream is down, fails, hangs, or dies mid-stream; client disconnects."""

from __future__ import annotations

import json
import socket
import struct

import time

import httpx
import openai
import pytest

from e2e_support import (
    make_openai,
    CHAT_MODEL,
    assert_openai_error,
    chat_body,
    free_port,
    iter_sse,
    nonce,
    wait_until,
)


@pytest.fixture(scope="module")
def down_gateway(module_procs):
    """A gateway whose upstream port has nothing listening."""
    dead_port = free_port()
    gw = module_procs.start_gateway(upstream=f"http://127.0.0.1:{dead_port}")
    gw.dead_port = dead_port
    return gw


def assert_no_leak(text: str, dead_port: int) -> None:
    for needle in ("127.0.0.1", "localhost", f":{dead_port}", "http://", ".swift", "Sources/"):
        assert needle not in text, f"error body leaks {needle!r}: {text}"


def test_upstream_down_is_502_via_openai(down_gateway):
    client = make_openai(down_gateway)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": f"hi {nonce()}"}])
    assert info.value.status_code == 502
    assert info.value.code == "upstream_unavailable"


def test_upstream_down_error_body(down_gateway):
    r = httpx.post(f"{down_gateway.v1}/chat/completions", json=chat_body(f"hi {nonce()}"), timeout=30)
    assert_openai_error(r, 502, code="upstream_unavailable")
    assert r.headers.get("x-request-id")
    assert_no_leak(r.text, down_gateway.dead_port)


def test_upstream_down_stream_request_is_502(down_gateway):
    r = httpx.post(f"{down_gateway.v1}/chat/completions", json=chat_body(f"hi {nonce()}", stream=True), timeout=30)
    assert_openai_error(r, 502, code="upstream_unavailable")
    assert_no_leak(r.text, down_gateway.dead_port)


def test_readyz_503_when_upstream_down(down_gateway):
    r = httpx.get(f"{down_gateway.url}/readyz", timeout=30)
    assert r.status_code == 503
    body = r.json()
    assert isinstance(body.get("upstreams"), list) and body["upstreams"], body
    assert_no_leak(r.text, down_gateway.dead_port)


def test_healthz_200_when_upstream_down(down_gateway):
    assert httpx.get(f"{down_gateway.url}/healthz", timeout=30).status_code == 200


def test_readyz_200_when_upstream_up(http):
    r = http.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body.get("upstreams"), list) and body["upstreams"], body


def test_upstream_500_is_502(http):
    r = http.post("/v1/chat/completions", json=chat_body(f"please fail [[error]] {nonce()}"))
    assert_openai_error(r, 502, code="upstream_error")


def test_upstream_500_via_openai_client(oai):
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": f"fail [[error]] {nonce()}"}]
        )
    assert info.value.status_code == 502
    assert info.value.code == "upstream_error"


def test_upstream_timeout_is_504(procs):
    slow_mock = procs.start_mock("--latency-ms", "5000")
    gw = procs.start_gateway(upstream=slow_mock.url, args=["--upstream-timeout", "300ms"])
    r = httpx.post(f"{gw.v1}/chat/completions", json=chat_body(f"too slow {nonce()}"), timeout=30)
    assert_openai_error(r, 504, code="upstream_timeout")


def test_upstream_dies_mid_stream_raises_in_openai_client(oai):
    stream = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": f"die now [[die]] {nonce()}"}],
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received, "no content arrived before the failure"


def test_upstream_dies_mid_stream_sse_error_event_no_done(http):
    with http.stream("POST", "/v1/chat/completions", json=chat_body(f"die [[die]] {nonce()}", stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(iter_sse(r.iter_lines()))
    data_events = [e for e in events if e.event in (None, "message")]
    assert all(e.data != "[DONE]" for e in events), f"a failed stream ended with [DONE]: {events}"
    assert any(e.data != "[DONE]" and e.json().get("choices") for e in data_events), "no chunks before the error"
    assert events and events[-1].event == "error", f"last event is not an error event: {events[-3:]}"
    error = events[-1].json()["error"]
    assert error.get("message") and error.get("code"), error


def test_upstream_dies_mid_native_stream_ends_with_error_line(http):
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"die [[die]] {nonce()}"}], "stream": True}
    with http.stream("POST", "/api/chat", json=body) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
    assert len(lines) >= 2, lines
    assert "error" in lines[-1] and lines[-1]["error"], f"last NDJSON line is not an error: {lines[-1]}"
    assert not any(line.get("done") is True for line in lines), "a failed native stream reported done"


def test_upstream_dies_without_response_is_502(http):
    r = http.post("/v1/chat/completions", json=chat_body(f"die [[die]] {nonce()}"))
    assert_openai_error(r, 502)


def read_two_chunks_then_leave(gw, prompt: str) -> None:
    """Streams a chat answer, reads two content chunks, and closes the connection mid-stream."""
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        with client.stream("POST", "/v1/chat/completions", json=chat_body(prompt, stream=True)) as r:
            assert r.status_code == 200
            got = 0
            for event in iter_sse(r.iter_lines()):
                if event.data != "[DONE]" and event.json().get("choices"):
                    got += 1
                if got >= 2:
                    break
            assert got >= 2


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_a_client_leaving_while_the_upstream_is_silent_ends_the_call_at_once(procs, kind):
    # The mock sends two chunks, then pauses 30 s: the gateway must notice the client's close during the pause, not
    # when the next chunk fails to reach it.
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--upstream-kind", kind])
    read_two_chunks_then_leave(gw, f"[[stall]] a long enough prompt to pause in the middle of {nonce()}")
    left = time.monotonic()
    wait_until(lambda: "client disconnected mid-stream" in gw.process.logs(), "the gateway to end the call when the client left",
               deadline=10, on_timeout=gw.process.logs)
    assert time.monotonic() - left < 10
    assert mock.stats()["streams_completed"] == 0


def test_a_client_that_resets_right_after_its_request_is_never_served(procs):
    # A reset can land before the connection's task has even started: its call must not run upstream for nobody.
    mock = procs.start_mock("--latency-ms", "20000")
    gw = procs.start_gateway(upstream=mock.url)
    body = json.dumps(chat_body(f"reset at once {nonce()}")).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", gw.port))
        sock.sendall(head + body)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    wait_until(lambda: gw.process.logs().count('"status":499') >= 10, "every reset call recorded as a 499",
               deadline=10, on_timeout=gw.process.logs)
    assert '"status":200' not in gw.process.logs().split("POST")[-1]


def test_gateway_still_serves_after_upstream_failures(http):
    prompt = f"still alive {nonce()}"
    r = http.post("/v1/chat/completions", json=chat_body(prompt))
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"].endswith(prompt)


def test_client_disconnect_cancels_upstream_stream(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url)
    read_two_chunks_then_leave(gw, f"[[slow]] a long enough prompt to have many words to stream slowly {nonce()}")
    wait_until(
        lambda: mock.stats()["streams_cancelled"] >= 1,
        "the mock to see its stream cancelled after the client went away",
        on_timeout=lambda: f"mock stats: {mock.stats()}",
    )
    stats = mock.stats()
    assert stats["streams_completed"] == 0, stats
