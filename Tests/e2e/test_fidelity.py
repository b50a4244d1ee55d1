"""Translation fidelity: nothing a client sends or an upstream answers is silently lost, and errors come in each
API's own shape."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from e2e_support import CHAT_MODEL, nonce

MASTER = "sk-master-fidelity"


def test_native_routes_answer_errors_the_way_ollama_does(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--master-key", MASTER])
    # Refused before any upstream: no key.
    r = httpx.post(f"{gw.url}/api/chat", json={"model": CHAT_MODEL, "messages": []})
    assert r.status_code == 401
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    # Refused by the gateway's validation, and by the upstream (unknown model), through the official client.
    client = ollama.Client(host=gw.url, headers={"Authorization": f"Bearer {MASTER}"})
    with pytest.raises(ollama.ResponseError) as unknown:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": nonce()}])
    assert unknown.value.status_code == 404
    assert "no-such-model" in unknown.value.error
    r = httpx.post(f"{gw.url}/api/chat", content=b"{not json", headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 400
    assert isinstance(r.json()["error"], str)


# --- Chat over Ollama: every field translated or refused by name --------------------------------------


@pytest.fixture(scope="module")
def translating(module_procs):
    mock = module_procs.start_mock()
    gw = module_procs.start_gateway(upstream=mock.url, args=["--cache-ttl", "0"])
    gw.mock = mock
    return gw


def last_request(gw, path: str) -> dict:
    requests = httpx.get(f"{gw.mock.url}/mock/requests", timeout=10).json()
    return next(r for r in reversed(requests) if r["path"] == path)["body"]


def openai_client(gw):
    import openai
    return openai.OpenAI(base_url=gw.v1, api_key="x", max_retries=0)


def test_reasoning_comes_back_whole_and_streamed(translating):
    client = openai_client(translating)
    prompt = f"[[think]] why {nonce()}"
    answer = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}])
    message = answer.choices[0].message.model_dump()
    assert message["reasoning_content"] == f"Thinking about: {prompt}"
    assert message["reasoning"] == message["reasoning_content"]
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True))
    reasoning = "".join((c.choices[0].delta.model_dump().get("reasoning_content") or "") for c in chunks if c.choices)
    content = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert reasoning == f"Thinking about: {prompt}"
    assert content.endswith(prompt)


@pytest.mark.parametrize("effort,think", [("none", False), ("low", "low"), ("medium", "medium"), ("high", "high")])
def test_reasoning_effort_becomes_think(translating, effort, think):
    openai_client(translating).chat.completions.create(
        model=CHAT_MODEL, reasoning_effort=effort, messages=[{"role": "user", "content": nonce()}])
    assert last_request(translating, "/api/chat")["think"] == think


def test_keep_alive_and_options_survive_extra_body(translating):
    openai_client(translating).chat.completions.create(
        model=CHAT_MODEL, temperature=0.5, messages=[{"role": "user", "content": nonce()}],
        extra_body={"keep_alive": "30m", "options": {"num_ctx": 8192, "temperature": 0.9}})
    sent = last_request(translating, "/api/chat")
    assert sent["keep_alive"] == "30m"
    assert sent["options"]["num_ctx"] == 8192
    assert sent["options"]["temperature"] == 0.5  # the OpenAI field wins


def test_tool_choice_none_sends_no_tools_and_a_named_choice_only_that_tool(translating):
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}} for n in ("a", "b")]
    client = openai_client(translating)
    answer = client.chat.completions.create(model=CHAT_MODEL, tools=tools, tool_choice="none", messages=[{"role": "user", "content": nonce()}])
    assert not answer.choices[0].message.tool_calls
    assert "tools" not in last_request(translating, "/api/chat") or not last_request(translating, "/api/chat")["tools"]
    client.chat.completions.create(
        model=CHAT_MODEL, tools=tools, tool_choice={"type": "function", "function": {"name": "b"}},
        messages=[{"role": "user", "content": nonce()}])
    assert [t["function"]["name"] for t in last_request(translating, "/api/chat")["tools"]] == ["b"]


def test_a_tool_result_without_its_call_keeps_the_tool_name(translating):
    openai_client(translating).chat.completions.create(model=CHAT_MODEL, messages=[
        {"role": "user", "content": nonce()},
        {"role": "tool", "tool_call_id": "call_unknown", "name": "lookup", "content": "42"},
    ])
    assert last_request(translating, "/api/chat")["messages"][-1]["tool_name"] == "lookup"


def test_n_above_one_is_refused_by_name(translating):
    import openai
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(translating).chat.completions.create(model=CHAT_MODEL, n=2, messages=[{"role": "user", "content": nonce()}])
    assert refused.value.body["param"] == "n"


def test_embedding_dimensions_reach_ollama(translating):
    openai_client(translating).embeddings.create(model="nomic-embed-text", input=nonce(), dimensions=256)
    assert last_request(translating, "/api/embed")["dimensions"] == 256


def test_native_requests_only_go_to_upstreams_that_speak_ollama(procs, tmp_path):
    ollama_mock, openai_mock = procs.start_mock(), procs.start_mock()
    config = tmp_path / "sluice.yaml"
    config.write_text(
        "upstreams:\n"
        f"  - name: local\n    url: {ollama_mock.url}\n    kind: ollama\n"
        f"  - name: hosted\n    url: {openai_mock.url}\n    kind: openai\n"
    )
    gw = procs.start_gateway(args=["--config", config, "--cache-ttl", "0"])
    client = ollama.Client(host=gw.url)
    for _ in range(20):
        client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": nonce()}])
    assert openai_mock.stats()["requests"].get("/api/chat", 0) == 0
    assert ollama_mock.stats()["requests"]["/api/chat"] == 20


def test_a_route_no_upstream_speaks_gets_one_clear_error(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--upstream-kind", "openai"])
    r = httpx.post(f"{gw.url}/api/chat", json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert "ollama" in r.json()["error"]


# --- Pass-through: valid OpenAI requests Sluice's types do not model still reach an OpenAI upstream ------------


@pytest.fixture(scope="module")
def passing(module_procs):
    mock = module_procs.start_mock()
    gw = module_procs.start_gateway(upstream=mock.url, args=["--upstream-kind", "openai", "--cache-ttl", "0"])
    gw.mock = mock
    return gw


def test_token_id_embeddings_pass_through_and_are_refused_by_name_for_ollama(passing, translating):
    body = {"model": "nomic-embed-text", "input": [[15339, 1917], [9906]]}
    r = httpx.post(f"{passing.v1}/embeddings", json=body, timeout=30)
    assert last_request(passing, "/v1/embeddings") == body
    assert r.status_code != 400 or r.json()["error"].get("param") != "input"
    refused = httpx.post(f"{translating.v1}/embeddings", json=body, timeout=30)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "input"
    assert "token arrays" in refused.json()["error"]["message"]


def test_custom_tools_pass_through_unchanged(passing):
    body = {
        "model": CHAT_MODEL, "messages": [{"role": "user", "content": nonce()}],
        "tools": [{"type": "custom", "custom": {"name": "apply_patch", "description": "Apply a patch"}}],
    }
    r = httpx.post(f"{passing.v1}/chat/completions", json=body, timeout=30)
    assert last_request(passing, "/v1/chat/completions") == body
    assert r.status_code != 400 or "tools[0]" not in json.dumps(r.json())


def test_pass_through_still_refuses_what_the_gateway_reads(passing):
    r = httpx.post(f"{passing.v1}/chat/completions", content=b'{"model":"a","model":"b","messages":[]}', timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key"
    r = httpx.post(f"{passing.v1}/chat/completions", json={"model": "", "messages": []}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_a_stream_that_ends_cleanly_after_its_finish_reason_is_complete(passing):
    """llama.cpp's server ends a complete stream without data: [DONE]; the official client must not raise."""
    import openai
    client = openai.OpenAI(base_url=passing.v1, api_key="x", max_retries=0)
    prompt = f"[[nodone]] all there {nonce()}"
    chunks = list(client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True, stream_options={"include_usage": True}))
    assert "".join((c.choices[0].delta.content or "") for c in chunks if c.choices).endswith(prompt)
    assert chunks[-1].usage.completion_tokens > 0
    with httpx.stream("POST", f"{passing.v1}/chat/completions", timeout=30, json={
        "model": CHAT_MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}]}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert not any(line.startswith("event: error") for line in lines)


def test_cached_answers_replay_their_reasoning(procs):
    import openai
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url)
    client = openai.OpenAI(base_url=gw.v1, api_key="x", max_retries=0)
    prompt = f"[[think]] cached thought {nonce()}"
    first = client.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}])
    assert first.headers["x-cache"] == "MISS"
    whole = client.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}])
    assert whole.headers["x-cache"] == "HIT"
    assert whole.parse().choices[0].message.model_dump()["reasoning_content"] == f"Thinking about: {prompt}"
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True))
    reasoning = "".join((c.choices[0].delta.model_dump().get("reasoning_content") or "") for c in chunks if c.choices)
    assert reasoning == f"Thinking about: {prompt}"


def test_a_stream_that_thinks_then_calls_a_tool(translating):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    chunks = list(openai_client(translating).chat.completions.create(
        model=CHAT_MODEL, tools=tools, stream=True, messages=[{"role": "user", "content": f"[[think]] plan {nonce()}"}]))
    deltas = [c.choices[0].delta.model_dump() for c in chunks if c.choices]
    assert "".join(d.get("reasoning_content") or "" for d in deltas).startswith("Thinking about: [[think]] plan")
    first_call = next(i for i, d in enumerate(deltas) if d.get("tool_calls"))
    assert all(not d.get("reasoning_content") for d in deltas[first_call:])
    assert deltas[first_call]["tool_calls"][0]["function"]["name"] == "f"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # No empty deltas stand in for dropped thinking.
    assert all(d.get("reasoning_content") or d.get("content") or d.get("tool_calls") or d.get("role") for d in deltas[:-1])


def test_the_embeddings_cap_holds_on_the_pass_through(passing):
    r = httpx.post(f"{passing.v1}/embeddings", json={"model": "nomic-embed-text", "input": ["a"] * 2049}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
