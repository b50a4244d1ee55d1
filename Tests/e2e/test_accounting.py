"""Accounting end to end: one usage record per request, none lost on SIGTERM, reports that add up,
on SQLite and (when CI provides one) a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from e2e_support import CHAT_MODEL, chat_body, make_ollama, nonce

MASTER = "master-" + "a" * 32


def usage(procs, database: str, *args: str) -> dict:
    done = procs.run_sluice("usage", "--json", "--since", "1h", "--database", database, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def totals(procs, database: str, **kw) -> dict:
    args = [a for k, v in kw.items() for a in (f"--{k}", v)]
    return usage(procs, database, *args)["totals"]


def test_every_request_is_recorded_and_none_lost_on_sigterm(procs, database):
    # Traffic under a model name no other test uses, so a shared PostgreSQL does not disturb the counts.
    mock = procs.start_mock()
    model = "qwen2.5:0.5b"
    before = totals(procs, database, model=model)
    gateway = procs.start_gateway(upstream=mock.url, args=["--database", database, "--master-key", MASTER])
    auth = {"authorization": f"Bearer {MASTER}"}
    ok, cached, failed = 20, 1, 2
    with httpx.Client(timeout=30, headers=auth) as client:
        for _ in range(ok):
            assert client.post(f"{gateway.v1}/chat/completions", json=chat_body(nonce(), model=model)).status_code == 200
        repeat = chat_body(f"repeat {nonce()}", model=model)
        assert client.post(f"{gateway.v1}/chat/completions", json=repeat).status_code == 200
        hit = client.post(f"{gateway.v1}/chat/completions", json=repeat)
        assert hit.headers["x-cache"] == "HIT"
        for _ in range(failed):
            r = client.post(f"{gateway.v1}/chat/completions", json=chat_body(f"[[error]] {nonce()}", model=model))
            assert r.status_code == 502
        # A streamed request without include_usage still gets its tokens from Ollama's final stats.
        with client.stream("POST", f"{gateway.v1}/chat/completions",
                           json=chat_body(nonce(), model=model, stream=True)) as s:
            assert s.status_code == 200
            s.read()
    sent = ok + 2 + failed + 1
    # Stop at once: whatever is still queued must be flushed by the graceful shutdown.
    gateway.process.signal(signal.SIGTERM)
    assert gateway.process.wait() == 0
    after = totals(procs, database, model=model)
    assert after["requests"] - before["requests"] == sent
    assert after["cache_hits"] - before["cache_hits"] == cached
    assert after["errors"] - before["errors"] == failed
    assert after["completion_tokens"] > before["completion_tokens"]
    # A local Ollama model costs nothing; what it saved is priced on the reference model.
    assert after["cost_usd"] == pytest.approx(before["cost_usd"])
    assert after["saved_usd"] > before["saved_usd"]


def test_reports_group_and_agree_with_the_admin_api(procs, database):
    mock = procs.start_mock()
    gateway = procs.start_gateway(upstream=mock.url, args=["--database", database, "--master-key", MASTER])
    auth = {"authorization": f"Bearer {MASTER}"}
    embed_model = "nomic-embed-text"
    with httpx.Client(timeout=30, headers=auth) as client:
        before = client.get(f"{gateway.url}/admin/usage", params={"since": "1h", "by": "model"}).json()
        for _ in range(3):
            assert client.post(f"{gateway.v1}/embeddings", json={"model": embed_model, "input": nonce()}).status_code == 200
        native = make_ollama(gateway)
        native._client.headers.update(auth)
        native.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": nonce()}])

        def group(report, name):
            return next((g for g in report["groups"] if g["group"].startswith(name)), {"requests": 0})

        def settled():
            report = client.get(f"{gateway.url}/admin/usage", params={"since": "1h", "by": "model"}).json()
            return report if group(report, embed_model)["requests"] - group(before, embed_model)["requests"] == 3 else None

        from e2e_support import wait_until

        report = wait_until(settled, "the usage writer to store the embeddings")
        assert report["by"] == "model"
        assert report["totals"]["requests"] == sum(g["requests"] for g in report["groups"])
        recent = client.get(f"{gateway.url}/admin/usage/recent", params={"limit": 5}).json()["data"]
        assert recent and all("latency_ms" in r and "cache_hit" in r and "status" in r for r in recent)
        assert any(r["route"] == "/api/chat" for r in recent)
        assert client.get(f"{gateway.url}/admin/usage", params={"by": "nonsense"}).status_code == 400
    table = procs.run_sluice("usage", "--since", "1h", "--by", "model", "--database", database)
    assert table.returncode == 0, table.stderr
    assert embed_model in table.stdout and "total" in table.stdout


def test_usage_command_rejects_bad_arguments(procs, tmp_path):
    done = procs.run_sluice("usage", "--by", "colour", "--database", f"sqlite:{tmp_path / 'x.db'}")
    assert done.returncode == 2
    assert "--by" in done.stderr


def test_streams_without_a_usage_chunk_are_estimated_and_flagged(procs, tmp_path):
    mock = procs.start_mock()
    database = f"sqlite:{tmp_path / 'estimate.db'}"
    gateway = procs.start_gateway(
        upstream=mock.url, args=["--upstream-kind", "openai", "--database", database, "--master-key", MASTER])
    auth = {"authorization": f"Bearer {MASTER}"}
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", headers=auth,
                      json=chat_body(f"estimate {nonce()}", stream=True)) as s:
        assert s.status_code == 200
        text = s.read().decode()
    assert '"usage"' not in text or '"usage":null' in text.replace(" ", "")

    from e2e_support import wait_until

    def record():
        data = httpx.get(f"{gateway.url}/admin/usage/recent", params={"limit": 5}, headers=auth).json()["data"]
        return next((r for r in data if r["route"] == "/v1/chat/completions"), None)

    found = wait_until(record, "the streamed request's usage record")
    assert found["tokens_estimated"] is True
    assert found["completion_tokens"] > 0 and found["prompt_tokens"] > 0


def test_record_usage_off_stores_nothing_but_still_serves(procs, tmp_path):
    database = f"sqlite:{tmp_path / 'quiet.db'}"
    mock = procs.start_mock()
    gateway = procs.start_gateway(
        upstream=mock.url, args=["--database", database, "--master-key", MASTER, "--record-usage", "false"])
    auth = {"authorization": f"Bearer {MASTER}"}
    with httpx.Client(timeout=30, headers=auth) as client:
        for _ in range(3):
            assert client.post(f"{gateway.v1}/chat/completions", json=chat_body(nonce())).status_code == 200
        assert client.get(f"{gateway.url}/admin/config").json()["record_usage"] is False
    # The graceful shutdown would flush queued records; with recording off there are none to flush.
    gateway.process.signal(signal.SIGTERM)
    assert gateway.process.wait() == 0
    assert totals(procs, database)["requests"] == 0


def test_calls_to_endpoints_sluice_lacks_are_recorded_under_their_path(procs, tmp_path):
    mock = procs.start_mock()
    gateway = procs.start_gateway(
        upstream=mock.url, args=["--database", f"sqlite:{tmp_path / 'lacking.db'}", "--master-key", MASTER])
    auth = {"authorization": f"Bearer {MASTER}"}
    missing = f"/v1/assistants-{nonce()[:8]}"
    assert httpx.post(f"{gateway.url}{missing}", json={}, headers=auth).status_code == 404
    assert httpx.get(f"{gateway.v1}/chat/completions", headers=auth).status_code == 405
    # Operations traffic is not API usage.
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    assert httpx.get(f"{gateway.url}/nowhere", headers=auth).status_code == 404

    from e2e_support import wait_until

    def records():
        data = httpx.get(f"{gateway.url}/admin/usage/recent", params={"limit": 20}, headers=auth).json()["data"]
        return data if len(data) >= 2 else None

    data = wait_until(records, "the two API-space records")
    assert sorted((r["route"], r["status"]) for r in data) == sorted([(missing, 404), ("/v1/chat/completions", 405)])
