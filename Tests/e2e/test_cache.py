"""The response cache, end to end: hits and misses, streamed replays, bypass, coalescing, memory bound."""

from __future__ import annotations

import concurrent.futures
import re

import httpx
import pytest

from e2e_support import CHAT_MODEL, chat_body, iter_sse, make_ollama, make_openai, nonce, wait_until


@pytest.fixture()
def pair(procs):
    mock = procs.start_mock()
    gateway = procs.start_gateway(upstream=mock.url)
    return mock, gateway


def chat_calls(mock) -> int:
    return mock.stats()["requests"].get("/api/chat", 0)


def post_chat(gateway, body, headers=None) -> httpx.Response:
    return httpx.post(f"{gateway.v1}/chat/completions", json=body, headers=headers or {}, timeout=30)


def test_second_identical_request_is_a_hit_and_skips_the_upstream(pair):
    mock, gateway = pair
    body = chat_body(f"cache me {nonce()}", temperature=0.2)
    first = post_chat(gateway, body)
    second = post_chat(gateway, body)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert chat_calls(mock) == 1
    a, b = first.json(), second.json()
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    assert a["usage"] == b["usage"]


def test_key_order_and_whitespace_do_not_matter(pair):
    mock, gateway = pair
    prompt = f"order {nonce()}"
    one = '{"model": "%s", "temperature": 0.5, "messages": [{"role": "user", "content": "%s"}]}' % (CHAT_MODEL, prompt)
    two = '{"messages":[{"content":"%s","role":"user"}],"temperature":0.5,"model":"%s"}' % (prompt, CHAT_MODEL)
    h = {"content-type": "application/json"}
    assert httpx.post(f"{gateway.v1}/chat/completions", content=one, headers=h).headers["x-cache"] == "MISS"
    assert httpx.post(f"{gateway.v1}/chat/completions", content=two, headers=h).headers["x-cache"] == "HIT"
    assert chat_calls(mock) == 1


def test_a_different_temperature_misses(pair):
    mock, gateway = pair
    prompt = f"temperature {nonce()}"
    assert post_chat(gateway, chat_body(prompt, temperature=0.1)).headers["x-cache"] == "MISS"
    assert post_chat(gateway, chat_body(prompt, temperature=0.9)).headers["x-cache"] == "MISS"
    assert chat_calls(mock) == 2


def test_no_cache_bypasses_and_no_store_does_not_write(pair):
    mock, gateway = pair
    body = chat_body(f"bypass {nonce()}")
    assert post_chat(gateway, body, {"cache-control": "no-store"}).headers["x-cache"] == "MISS"
    # no-store wrote nothing: the next plain request still misses (and fills the cache).
    assert post_chat(gateway, body).headers["x-cache"] == "MISS"
    assert post_chat(gateway, body).headers["x-cache"] == "HIT"
    # no-cache goes to the upstream even though an entry exists.
    assert post_chat(gateway, body, {"cache-control": "no-cache"}).headers["x-cache"] == "MISS"
    assert chat_calls(mock) == 3


def _stream_payloads(gateway, body):
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        cache = r.headers["x-cache"]
        events = list(iter_sse(r.iter_lines()))
    return cache, events


def _normalise(events):
    """Chunks with the per-response id and timestamp blanked out."""
    out = []
    for e in events:
        if e.data == "[DONE]":
            out.append("[DONE]")
            continue
        chunk = e.json()
        chunk["id"] = "x"
        chunk["created"] = 0
        out.append(chunk)
    return out


def test_stream_replay_is_identical_to_the_original(pair):
    mock, gateway = pair
    body = chat_body(f"stream replay {nonce()}", stream=True, stream_options={"include_usage": True})
    cache1, original = _stream_payloads(gateway, body)
    cache2, replay = _stream_payloads(gateway, body)
    assert (cache1, cache2) == ("MISS", "HIT")
    assert len(original) > 3
    assert _normalise(replay) == _normalise(original)
    assert replay[-1].data == "[DONE]"
    assert chat_calls(mock) == 1


def test_streamed_entry_answers_a_plain_request_and_the_sdk(pair):
    mock, gateway = pair
    prompt = f"cross {nonce()}"
    _stream_payloads(gateway, chat_body(prompt, stream=True))
    plain = post_chat(gateway, chat_body(prompt))
    assert plain.headers["x-cache"] == "HIT"
    client = make_openai(gateway)
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}])
    assert reply.choices[0].message.content == plain.json()["choices"][0]["message"]["content"]
    assert chat_calls(mock) == 1


def test_native_ollama_routes_are_cached(pair):
    mock, gateway = pair
    client = make_ollama(gateway)
    prompt = f"native {nonce()}"
    first = client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}])
    second = client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}])
    assert first.message.content == second.message.content
    assert chat_calls(mock) == 1
    streamed = "".join(
        part.message.content
        for part in client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True)
    )
    assert streamed == first.message.content
    assert chat_calls(mock) == 1


def test_embeddings_are_cached(pair):
    mock, gateway = pair
    body = {"model": "nomic-embed-text", "input": f"embed {nonce()}"}
    a = httpx.post(f"{gateway.v1}/embeddings", json=body, timeout=30)
    b = httpx.post(f"{gateway.v1}/embeddings", json=body, timeout=30)
    assert (a.headers["x-cache"], b.headers["x-cache"]) == ("MISS", "HIT")
    assert a.json()["data"] == b.json()["data"]
    assert mock.stats()["requests"].get("/api/embed", 0) == 1


def test_fifty_concurrent_identical_requests_make_one_upstream_call(pair):
    mock, gateway = pair
    # [[slow]] makes the mock take long enough that all fifty arrive while the first is in flight.
    body = chat_body(f"[[slow]] concurrent {nonce()}")
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=60)) as client:
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(lambda _: client.post(f"{gateway.v1}/chat/completions", json=body), range(50)))
    assert all(r.status_code == 200 for r in responses)
    contents = {r.json()["choices"][0]["message"]["content"] for r in responses}
    assert len(contents) == 1
    assert chat_calls(mock) == 1


def _metric(gateway, name: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_memory_stays_within_the_bound_when_filling_ten_times_over(procs):
    mock = procs.start_mock()
    bound = 64 * 1024
    gateway = procs.start_gateway(upstream=mock.url, args=["--cache-max-bytes", str(bound)])
    filler = "x" * 2000
    written = 0
    with httpx.Client(timeout=30) as client:
        while written < 10 * bound:
            prompt = f"{nonce()} {filler}"
            r = client.post(f"{gateway.v1}/chat/completions", json=chat_body(prompt))
            assert r.status_code == 200
            written += len(r.content)
            assert _metric(gateway, "sluice_cache_bytes") <= bound
    assert _metric(gateway, "sluice_cache_evictions_total") > 0
    assert 0 < _metric(gateway, "sluice_cache_entries") < 64


def test_cache_hits_are_accounted_and_counted(pair):
    mock, gateway = pair
    body = chat_body(f"metrics {nonce()}")
    before_hits = _metric(gateway, "sluice_cache_hits_total") if "sluice_cache_hits_total" in httpx.get(f"{gateway.url}/metrics").text else 0
    post_chat(gateway, body)
    post_chat(gateway, body)
    assert _metric(gateway, "sluice_cache_hits_total") == before_hits + 1


def test_a_cached_body_with_a_bad_delivery_field_is_still_refused(pair):
    """Hits skip decoding the request; the fields the cache key leaves out must still be validated."""
    mock, gateway = pair
    body = chat_body(f"delivery {nonce()}")
    assert post_chat(gateway, body).headers["x-cache"] == "MISS"
    for field, value in (("stream", "yes"), ("user", 5), ("stream_options", {"include_usage": "yes"})):
        r = post_chat(gateway, {**body, field: value})
        assert r.status_code == 400, (field, r.text)
        assert "x-cache" not in r.headers
    # A valid variation of the same fields still hits, streamed with a usage chunk as asked.
    hit = post_chat(gateway, {**body, "user": "someone", "stream": False})
    assert hit.headers["x-cache"] == "HIT"
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", timeout=30,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as s:
        assert s.headers["x-cache"] == "HIT"
        events = list(iter_sse(s.iter_lines()))
    assert events[-1].data == "[DONE]"
    assert '"usage"' in events[-2].data
    assert chat_calls(mock) == 1
    # Misses are counted once per request even though hits are looked for before decoding.
    assert _metric(gateway, "sluice_cache_misses_total") == 1


def test_a_key_limited_to_other_models_gets_no_hit(procs, tmp_path):
    mock = procs.start_mock()
    database = f"sqlite:{tmp_path / 'keys.db'}"
    gateway = procs.start_gateway(upstream=mock.url, args=["--database", database, "--master-key", "m" * 40])
    limited = procs.run_sluice("keys", "create", "--name", "limited", "--models", "other-model", "--database", database)
    assert limited.returncode == 0, limited.stderr
    body = chat_body(f"scoped {nonce()}")
    master = {"authorization": "Bearer " + "m" * 40}
    assert post_chat(gateway, body, master).headers["x-cache"] == "MISS"
    assert post_chat(gateway, body, master).headers["x-cache"] == "HIT"
    key = limited.stdout.strip()

    def refused():
        r = post_chat(gateway, body, {"authorization": f"Bearer {key}"})
        return r if r.status_code != 401 else None  # the new key reaches the gateway within a second

    r = wait_until(refused, "the new key to be known")
    assert r.status_code == 403, r.text
