"""Input validation through the real binary: every value of the black-box probe that crashed the gateway, slipped a
duplicate key past a model scope, or got a message without the field's name.

A trap shows here as a 5xx or a dropped connection and a gateway process that has exited, so each test ends by
checking the process still answers.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from e2e_support import CHAT_MODEL, EMBED_MODEL, assert_openai_error, chat_body, nonce

MASTER = "master-" + "v" * 32
FIVE_THOUSAND_DIGITS = "9" * 5000


def create_key(procs, db: str, *args: str) -> str:
    done = procs.run_sluice("keys", "create", "--database", db, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def secured(module_procs, tmp_path_factory):
    """An OpenAI-kind gateway (the raw body is forwarded) with a master key and a key scoped to one model."""
    db = f"sqlite:{tmp_path_factory.mktemp('valid-db') / 'sluice.db'}"
    done = module_procs.run_sluice("keys", "create", "--database", db, "--name", "scoped", "--models", CHAT_MODEL)
    assert done.returncode == 0, done.stderr
    mock = module_procs.start_mock()
    gateway = module_procs.start_gateway(
        upstream=mock.url, args=["--upstream-kind", "openai", "--database", db, "--master-key", MASTER])
    return gateway, mock, done.stdout.strip(), db


def admin() -> dict:
    return {"authorization": f"Bearer {MASTER}"}


def alive(gateway) -> None:
    assert not gateway.process.exited(), f"the gateway exited:\n{gateway.process.logs()}"
    assert httpx.get(f"{gateway.url}/healthz", timeout=10).status_code == 200


def raw_post(gateway, path: str, body: bytes, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", content=body,
                      headers={"content-type": "application/json", **(headers or {})}, timeout=30)


# --- Finding 1: one request killed the process ------------------------------------------------------------


@pytest.mark.parametrize("query,param", [
    ("since=1e30", "since"),
    ("since=inf", "since"),
    ("since=-inf", "since"),
    ("since=nan", "since"),
    ("until=99999999999999999999d", "until"),
    (f"since={FIVE_THOUSAND_DIGITS}", "since"),
])
@pytest.mark.parametrize("path", ["/admin/usage", "/admin/usage/recent"])
def test_usage_query_out_of_range_is_400(secured, path, query, param):
    gateway = secured[0]
    r = httpx.get(f"{gateway.url}{path}?{query}", headers=admin(), timeout=30)
    error = assert_openai_error(r, 400, param=param)
    assert error["type"] == "invalid_request_error"
    alive(gateway)


@pytest.mark.parametrize("query", ["limit=99999999999999999999", "limit=0", "limit=1e3", "limit=-5"])
def test_recent_limit_out_of_range_is_400(secured, query):
    gateway = secured[0]
    assert_openai_error(httpx.get(f"{gateway.url}/admin/usage/recent?{query}", headers=admin(), timeout=30), 400,
                        param="limit")
    alive(gateway)


@pytest.mark.parametrize("body,param", [
    ({"name": "k", "expires": "1e300"}, "expires"),
    ({"name": "k", "expires": "99999999999999999999d"}, "expires"),
    ({"name": "k", "expires": "inf"}, "expires"),
    ({"name": "k", "rpm": 9223372036854775807}, "rpm"),
    ({"name": "k", "rpm": 1e300}, "rpm"),
    ({"name": "k", "budget_usd": 1e300}, "budget_usd"),
])
def test_key_creation_out_of_range_is_400(secured, body, param):
    gateway = secured[0]
    r = httpx.post(f"{gateway.url}/admin/keys", json=body, headers=admin(), timeout=30)
    assert_openai_error(r, 400, param=param)
    alive(gateway)


def test_budget_of_1e999_names_the_field(secured):
    gateway = secured[0]
    r = raw_post(gateway, "/admin/keys", b'{"name":"k","budget_usd":1e999}', admin())
    error = assert_openai_error(r, 400, param="budget_usd")
    assert "out of range" in error["message"]


@pytest.mark.parametrize("args,flag", [
    (("usage", "--since", "1e30"), "--since"),
    (("usage", "--since", "inf"), "--since"),
    (("usage", "--until", "99999999999999999999d"), "--until"),
    (("keys", "create", "--name", "k", "--expires", "1e300"), "--expires"),
    (("keys", "create", "--name", "k", "--expires", "99999999999999999999d"), "--expires"),
    (("keys", "create", "--name", "k", "--budget", "inf"), "--budget"),
    (("keys", "create", "--name", "k", "--rpm", "9223372036854775807"), "--rpm"),
])
def test_cli_refuses_out_of_range_values(procs, tmp_path, args, flag):
    done = procs.run_sluice(*args, "--database", f"sqlite:{tmp_path / 'cli.db'}")
    # A trap ends the process by a signal (negative return code); a refusal is a usage error naming the flag.
    assert done.returncode > 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert flag in done.stderr, done.stderr


@pytest.mark.parametrize("flag,value", [
    ("--cache-ttl", "1e30"),
    ("--upstream-timeout", "inf"),
    ("--idle-timeout", "99999999999999999999d"),
    ("--max-body-bytes", "1e30"),
    ("--cache-max-bytes", FIVE_THOUSAND_DIGITS),
    ("--rate-limit-rps", "inf"),
    ("--rate-limit-rps", "1e300"),
])
def test_config_refuses_out_of_range_values(procs, tmp_path, flag, value):
    done = procs.run_sluice("check-config", flag, value, cwd=tmp_path)
    assert done.returncode == 2, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert flag.lstrip("-") in done.stdout + done.stderr


def test_config_file_refuses_huge_weight_and_infinite_price(procs, tmp_path):
    config = tmp_path / "sluice.json"
    config.write_text(json.dumps({"upstreams": [{"url": "http://127.0.0.1:1", "weight": 10**20}]}))
    done = procs.run_sluice("check-config", "--config", config, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    config.write_text('{"prices": {"m": {"input": 1e999, "output": 1}}}')
    done = procs.run_sluice("check-config", "--config", config, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr


# --- Finding 2: duplicate keys ------------------------------------------------------------------------------


DUPLICATES = [
    (b'{"model":"llama3.2","model":"qwen2.5:0.5b","messages":[{"role":"user","content":"hi"}]}', "model"),
    (b'{"model":"llama3.2","mo\\u0064el":"qwen2.5:0.5b","messages":[{"role":"user","content":"hi"}]}', "model"),
    (b'{"messages":[{"role":"user","content":"hi"}],"model":"qwen2.5:0.5b","model":"llama3.2"}', "model"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"a","content":"b"}]}', "messages[0].content"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true,"include_usage":false}}',
     "stream_options.include_usage"),
]


@pytest.mark.parametrize("body,param", DUPLICATES)
def test_duplicate_keys_are_refused_before_forwarding(secured, body, param):
    gateway, mock, scoped, _ = secured
    before = mock.stats()
    r = raw_post(gateway, "/v1/chat/completions", body, {"authorization": f"Bearer {scoped}"})
    error = assert_openai_error(r, 400, code="duplicate_key", param=param)
    assert "duplicate key" in error["message"]
    assert mock.stats() == before, "a body with a duplicate key reached the upstream"


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", b'{"model":"llama3.2","prompt":"p","model":"qwen2.5:0.5b"}'),
    ("/v1/embeddings", b'{"model":"nomic-embed-text","input":"x","input":"y"}'),
    ("/api/chat", b'{"model":"llama3.2","messages":[],"model":"qwen2.5:0.5b"}'),
    ("/api/generate", b'{"model":"llama3.2","prompt":"p","options":{"seed":1,"seed":2}}'),
])
def test_duplicate_keys_are_refused_on_every_route(secured, path, body):
    gateway, _, _, _ = secured
    r = raw_post(gateway, path, body, admin())
    if path.startswith("/api/"):
        # Ollama's native routes answer in Ollama's shape: {"error": "…"} naming the key.
        assert r.status_code == 400, r.text
        assert "duplicate" in r.json()["error"]
    else:
        assert_openai_error(r, 400, code="duplicate_key")


def test_duplicate_keys_in_admin_bodies_are_refused(secured):
    gateway = secured[0]
    r = raw_post(gateway, "/admin/keys", b'{"name":"a","name":"b"}', admin())
    assert_openai_error(r, 400, code="duplicate_key", param="name")


def test_the_scoped_key_still_works(secured):
    gateway, _, scoped, _ = secured
    r = httpx.post(f"{gateway.v1}/chat/completions", json=chat_body(nonce()),
                   headers={"authorization": f"Bearer {scoped}"}, timeout=30)
    assert r.status_code == 200, r.text


# --- Finding 3: messages that name the field -----------------------------------------------------------------


def chat_with(**extra) -> dict:
    return chat_body(nonce(), **extra)


@pytest.mark.parametrize("extra,param,words", [
    ({"response_format": "json"}, "response_format", "expected object"),
    ({"stream_options": [1]}, "stream_options", "expected object"),
    ({"logit_bias": "x"}, "logit_bias", "expected object"),
    ({"tool_choice": 123}, "tool_choice", "expected"),
    ({"logprobs": "x"}, "logprobs", "expected boolean"),
    ({"temperature": "hot"}, "temperature", "expected number"),
    ({"top_logprobs": 30, "logprobs": True}, "top_logprobs", "between"),
])
def test_chat_fields_are_named(http, extra, param, words):
    error = assert_openai_error(http.post("/v1/chat/completions", json=chat_with(**extra)), 400, param=param)
    assert words in error["message"], error


@pytest.mark.parametrize("raw,words", [
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"\\ud800"}]}', "not allowed"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"a\\u0000b"}]}', "not allowed"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"a\x00b"}]}', "not allowed"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"a\xffb"}]}', "UTF-8"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"a\xed\xa0\x80b"}]}', "UTF-8"),
])
def test_broken_strings_name_the_field(gateway, raw, words):
    error = assert_openai_error(raw_post(gateway, "/v1/chat/completions", raw), 400, param="messages[0].content")
    assert words in error["message"], error
    assert "expected array" not in error["message"]


@pytest.mark.parametrize("raw,param", [
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":1e999}', "temperature"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"max_tokens":' + FIVE_THOUSAND_DIGITS.encode() + b"}",
     "max_tokens"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"max_tokens":' + b"9" * 30 + b"}", "max_tokens"),
    (b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"seed":1e300}', "seed"),
    (b'{"model":"llama3.2","prompt":"p","temperature":-1e999}', "temperature"),
])
def test_numbers_out_of_range_name_the_field(gateway, raw, param):
    path = "/v1/completions" if b'"prompt"' in raw else "/v1/chat/completions"
    error = assert_openai_error(raw_post(gateway, path, raw), 400, param=param)
    assert "out of range" in error["message"], error


@pytest.mark.parametrize("extra,param", [
    ({"best_of": -1}, "best_of"),
    ({"logprobs": "x"}, "logprobs"),
    ({"logprobs": 9}, "logprobs"),
    ({"logit_bias": "x"}, "logit_bias"),
])
def test_completion_fields_are_named(http, extra, param):
    body = {"model": CHAT_MODEL, "prompt": nonce(), **extra}
    assert_openai_error(http.post("/v1/completions", json=body), 400, param=param)


@pytest.mark.parametrize("value", ["", [""], [], ["a", ""]])
def test_empty_embeddings_input_is_400(http, value):
    r = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": value})
    assert_openai_error(r, 400, param="input")


# --- Finding 4: embeddings inputs capped at 2,048 -----------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


def test_embeddings_inputs_capped_at_2048(http):
    ok = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": [nonce()] * 2048})
    assert ok.status_code == 200, ok.text
    error = assert_openai_error(http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": ["a"] * 2049}), 400,
                                param="input")
    assert "2048" in error["message"]


def test_200000_inputs_are_refused_without_memory_growth(gateway):
    body = b'{"model":"nomic-embed-text","input":[' + b",".join([b'"ab"'] * 200_000) + b"]}"
    assert 900_000 < len(body) < 1_100_000
    baseline = rss_kib(gateway.process.pid)
    for _ in range(3):
        error = assert_openai_error(raw_post(gateway, "/v1/embeddings", body), 400, param="input")
        assert "2048" in error["message"]
    time.sleep(0.2)
    grown = rss_kib(gateway.process.pid) - baseline
    assert grown < 50 * 1024, f"RSS grew by {grown} KiB after three 200,000-input bodies"
    alive(gateway)
