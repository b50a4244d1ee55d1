"""store-bodies and log-bodies: off by default; when on, what a call sent and got is kept with its usage
record or in its access log line, and nothing from the admin side (keys, the master key) ever is."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from e2e_support import CHAT_MODEL, make_ollama, nonce, wait_until

MASTER = "master-" + "b" * 32


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0, timeout=30)


def record_for(gateway, marker: str) -> dict:
    """The usage record whose request body contains `marker`, once the writer has stored it."""
    def find():
        data = httpx.get(f"{gateway.url}/admin/usage/recent", params={"limit": 50},
                         headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
        return next((r for r in data if marker in (r.get("request_body") or "")), None)

    return wait_until(find, f"the usage record of the request carrying {marker}")


def test_bodies_are_stored_with_usage_records_when_asked(procs, database):
    mock = procs.start_mock()
    gateway = procs.start_gateway(
        upstream=mock.url, args=["--database", database, "--master-key", MASTER, "--store-bodies", "true"])
    api = client(gateway)

    plain = nonce()
    answer = api.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": plain}])
    record = record_for(gateway, plain)
    assert record["route"] == "/v1/chat/completions" and record["status"] == 200
    assert json.loads(record["request_body"])["messages"][0]["content"] == plain
    assert answer.choices[0].message.content in json.loads(record["response_body"])["choices"][0]["message"]["content"]

    streamed = nonce()
    chunks = list(api.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": streamed}], stream=True))
    assert chunks
    record = record_for(gateway, streamed)
    assert record["stream"] is True
    assert record["response_body"].startswith("data: ") and "data: [DONE]" in record["response_body"]

    # An error answer is kept as the client got it.
    bad = nonce()
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": bad}], temperature=9)
    record = record_for(gateway, bad)
    assert record["status"] == 400 and json.loads(record["response_body"])["error"]["param"] == "temperature"

    native = nonce()
    ollama = make_ollama(gateway)
    ollama._client.headers.update({"authorization": f"Bearer {MASTER}"})
    ollama.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": native}])
    record = record_for(gateway, native)
    assert record["route"] == "/api/chat" and '"done":true' in record["response_body"].replace(" ", "")

    # Admin calls are never captured: a created key's secret must not end up in the usage store.
    created = httpx.post(f"{gateway.url}/admin/keys", json={"name": "secret-holder"},
                         headers={"authorization": f"Bearer {MASTER}"})
    assert created.status_code in (200, 201), created.text
    secret = created.json()["key"]
    recent = httpx.get(f"{gateway.url}/admin/usage/recent", params={"limit": 200},
                       headers={"authorization": f"Bearer {MASTER}"}).text
    assert secret not in recent and MASTER not in recent


def logging_gateway_after_one_chat(procs, tmp_path, *extra: str):
    """A gateway logging to a file, after one chat call; returns it, the log and the call's unique prompt."""
    mock = procs.start_mock()
    log = tmp_path / "gateway-logs" / "sluice.log"
    log.parent.mkdir()
    gateway = procs.start_gateway(
        upstream=mock.url,
        args=["--database", f"sqlite:{tmp_path / 'logged.db'}", "--master-key", MASTER, "--log-file", str(log), *extra])
    marker = nonce()
    client(gateway).chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": marker}])
    return gateway, log, marker


def test_bodies_are_neither_stored_nor_logged_by_default(procs, tmp_path):
    gateway, log, marker = logging_gateway_after_one_chat(procs, tmp_path)

    def stored():
        data = httpx.get(f"{gateway.url}/admin/usage/recent", params={"limit": 5},
                         headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
        return next((r for r in data if r["route"] == "/v1/chat/completions"), None)

    record = wait_until(stored, "the chat call's usage record")
    assert "request_body" not in record and "response_body" not in record
    wait_until(lambda: "/v1/chat/completions" in log.read_text(), "the access log line")
    assert marker not in log.read_text()


def test_log_bodies_puts_them_in_the_access_line(procs, tmp_path):
    gateway, log, marker = logging_gateway_after_one_chat(procs, tmp_path, "--log-bodies", "true")

    def line():
        for text in log.read_text().splitlines():
            entry = json.loads(text)
            if entry.get("path") == "/v1/chat/completions" and marker in entry.get("request_body", ""):
                return entry
        return None

    entry = wait_until(line, "the access line with the request body")
    assert '"choices"' in entry["response_body"]
    # Bodies are logged; the key that authenticated the call is not.
    assert MASTER not in log.read_text()
    # log-bodies alone does not store them.
    data = httpx.get(f"{gateway.url}/admin/usage/recent", params={"limit": 5},
                     headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
    assert all("request_body" not in r for r in data)
