"""The mock upstream on its own (no gateway): its Anthropic Messages API driven by the official `anthropic`
client, the tool-call and thinking shapes of its Ollama and OpenAI APIs, and `GET /mock/requests`.

Every other test trusts these shapes to be the real servers', so they are pinned here.
"""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import pytest

from e2e_support import CHAT_MODEL, expected_reply, iter_sse, nonce, word_count

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "unit"],
}
ANTHROPIC_TOOL = {"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER_SCHEMA}
OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_SCHEMA},
}
MOCK_ARGS = {"city": "mock", "unit": "mock"}

# A dropped connection, as the SDK reports it: its own error, or its HTTP library's (recent `anthropic` releases
# ship that library as `httpx2`).
DROPPED: tuple = (anthropic.APIError, httpx.HTTPError)
try:
    import httpx2  # type: ignore[import-not-found]

    DROPPED += (httpx2.HTTPError,)
except ImportError:
    pass


@pytest.fixture
def claude(mock):
    with anthropic.Anthropic(base_url=mock.url, api_key="sk-ant-test", max_retries=0, timeout=30) as client:
        yield client


def user(prompt: str) -> list:
    return [{"role": "user", "content": prompt}]


def raw_events(mock, body: dict) -> list:
    """The named SSE events of a streamed /v1/messages answer, as (event, data) pairs."""
    with httpx.stream("POST", f"{mock.url}/v1/messages", json=body, timeout=30,
                      headers={"anthropic-version": "2023-06-01"}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [(e.event, e.json()) for e in iter_sse(r.iter_lines())]
    for name, data in events:
        assert name == data["type"], f"event {name!r} carries data of type {data['type']!r}"
    return events


# ---------------------------------------------------------------------------------------------
# Anthropic Messages


def test_messages_create_text(claude):
    prompt = f"Hello there {nonce()}"
    msg = claude.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user(prompt))
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert msg.model == CHAT_MODEL
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == expected_reply(prompt)
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens == word_count(prompt)
    assert msg.usage.output_tokens == word_count(expected_reply(prompt))
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0


def test_messages_create_counts_system_and_block_content(claude):
    prompt = f"Blocks here {nonce()}"
    msg = claude.messages.create(
        model=CHAT_MODEL, max_tokens=64, system="Be brief now",
        messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}],
    )
    assert msg.content[0].text == expected_reply(prompt)
    assert msg.usage.input_tokens == word_count(prompt) + 3


def test_messages_stream_text(claude):
    prompt = f"Stream it {nonce()}"
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=64, messages=user(prompt)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == expected_reply(prompt)
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == word_count(prompt)
    assert final.usage.output_tokens == word_count(text)


def test_messages_stream_wire_events(mock):
    prompt = f"Raw events {nonce()}"
    events = raw_events(mock, {"model": CHAT_MODEL, "max_tokens": 64, "stream": True, "messages": user(prompt)})
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["stop_sequence"] is None
    assert start["usage"] == {
        "input_tokens": word_count(prompt), "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
    }
    assert events[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [d for n, d in events if n == "content_block_delta"]
    assert all(d["delta"]["type"] == "text_delta" and d["index"] == 0 for d in deltas)
    assert "".join(d["delta"]["text"] for d in deltas) == expected_reply(prompt)
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": word_count(expected_reply(prompt))},
    }


def test_messages_tool_use(claude):
    prompt = f"Weather in Paris? [[tool]] {nonce()}"
    msg = claude.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user(prompt), tools=[ANTHROPIC_TOOL])
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["tool_use"]
    block = msg.content[0]
    assert block.id.startswith("toolu_") and block.name == "get_weather" and block.input == MOCK_ARGS


def test_messages_tools_without_trigger_answer_text(claude):
    prompt = f"Weather in Paris? {nonce()}"
    msg = claude.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user(prompt), tools=[ANTHROPIC_TOOL])
    assert msg.stop_reason == "end_turn" and msg.content[0].text == expected_reply(prompt)


def test_messages_stream_tool_use(claude, mock):
    prompt = f"Weather in Rome? [[tool]] {nonce()}"
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=64, messages=user(prompt), tools=[ANTHROPIC_TOOL]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == MOCK_ARGS

    events = raw_events(mock, {"model": CHAT_MODEL, "max_tokens": 64, "stream": True, "messages": user(prompt),
                               "tools": [ANTHROPIC_TOOL]})
    block = next(d["content_block"] for n, d in events if n == "content_block_start")
    assert block == {"type": "tool_use", "id": block["id"], "name": "get_weather", "input": {}}
    partials = [d["delta"]["partial_json"] for n, d in events
                if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert len([p for p in partials if p]) >= 3
    assert json.loads("".join(partials)) == MOCK_ARGS
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_messages_thinking(claude):
    prompt = f"Ponder this [[think]] {nonce()}"
    msg = claude.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user(prompt))
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == f"Thinking about: {prompt}"
    assert msg.content[0].signature == "mock-signature"
    assert msg.content[1].text == expected_reply(prompt)


def test_messages_stream_thinking(claude, mock):
    prompt = f"Ponder this [[think]] {nonce()}"
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=64, messages=user(prompt)) as s:
        kinds = [e.delta.type for e in s if e.type == "content_block_delta"]
        final = s.get_final_message()
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == f"Thinking about: {prompt}"
    assert final.content[0].signature == "mock-signature"
    assert final.content[1].text == expected_reply(prompt)
    # every thinking delta, then one signature, then the text
    first_text = kinds.index("text_delta")
    assert set(kinds[: first_text - 1]) == {"thinking_delta"} and kinds[first_text - 1] == "signature_delta"

    events = raw_events(mock, {"model": CHAT_MODEL, "max_tokens": 64, "stream": True, "messages": user(prompt)})
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "text"]
    assert [s["index"] for s in starts] == [0, 1]


def test_count_tokens(claude):
    prompt = f"Count these four {nonce()}"
    result = claude.messages.count_tokens(model=CHAT_MODEL, messages=user(prompt), system="one two")
    assert result.input_tokens == word_count(prompt) + 2


def test_messages_errors(claude, mock):
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(model="claude-nope", max_tokens=64, messages=user("hi"))
    assert info.value.body == {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-nope"}}

    with pytest.raises(anthropic.InternalServerError) as info:
        claude.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user(f"boom [[error]] {nonce()}"))
    assert info.value.body["error"]["type"] == "api_error"

    r = httpx.post(f"{mock.url}/v1/messages", json={"model": CHAT_MODEL, "messages": user("hi")}, timeout=10)
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}


def test_messages_die_and_slow(claude):
    with pytest.raises(DROPPED):
        with claude.messages.stream(model=CHAT_MODEL, max_tokens=64, messages=user(f"[[die]] {nonce()}")) as s:
            s.get_final_message()
    with pytest.raises(DROPPED):
        claude.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user(f"[[die]] {nonce()}"))

    prompt = f"[[slow]] {nonce()}"
    began = time.monotonic()
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=64, messages=user(prompt)) as s:
        assert "".join(s.text_stream) == expected_reply(prompt)
    assert time.monotonic() - began >= 1.0  # 100 ms between each of a dozen events


def test_required_api_key(procs):
    strict = procs.start_mock("--anthropic-api-key", "sk-ant-right")
    wrong = anthropic.Anthropic(base_url=strict.url, api_key="sk-ant-wrong", max_retries=0, timeout=30)
    with pytest.raises(anthropic.AuthenticationError) as info:
        wrong.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user("hi"))
    assert info.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    right = anthropic.Anthropic(base_url=strict.url, api_key="sk-ant-right", max_retries=0, timeout=30)
    assert right.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user("hi")).content[0].text == expected_reply("hi")


# ---------------------------------------------------------------------------------------------
# Ollama and OpenAI: tools and thinking


def test_ollama_tool_call(mock):
    body = {"model": CHAT_MODEL, "messages": user(f"weather [[tool]] {nonce()}"), "tools": [OPENAI_TOOL], "stream": False}
    r = httpx.post(f"{mock.url}/api/chat", json=body, timeout=10).json()
    assert r["message"]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": MOCK_ARGS}}]
    assert r["done"] is True and r["done_reason"] == "stop"

    with httpx.stream("POST", f"{mock.url}/api/chat", json={**body, "stream": True}, timeout=10) as s:
        lines = [json.loads(line) for line in s.iter_lines() if line]
    assert len(lines) == 2
    assert lines[0]["message"]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": MOCK_ARGS}}]
    assert lines[0]["done"] is False
    assert lines[1]["done"] is True and lines[1]["done_reason"] == "stop"


def test_openai_tool_call_streamed_in_pieces(mock):
    body = {"model": CHAT_MODEL, "messages": user(f"weather [[tool]] {nonce()}"), "tools": [OPENAI_TOOL], "stream": True}
    with httpx.stream("POST", f"{mock.url}/v1/chat/completions", json=body, timeout=10) as s:
        events = [e.data for e in iter_sse(s.iter_lines())]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    first, rest = calls[0], calls[1:]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert len(rest) >= 3 and all(set(c) == {"index", "function"} and set(c["function"]) == {"arguments"} for c in rest)
    assert json.loads("".join(c["function"]["arguments"] for c in rest)) == MOCK_ARGS
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    r = httpx.post(f"{mock.url}/v1/chat/completions", json={**body, "stream": False}, timeout=10).json()
    call = r["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == MOCK_ARGS
    assert r["choices"][0]["finish_reason"] == "tool_calls"


def test_ollama_thinking(mock):
    prompt = f"why [[think]] {nonce()}"
    body = {"model": CHAT_MODEL, "messages": user(prompt), "stream": False}
    r = httpx.post(f"{mock.url}/api/chat", json=body, timeout=10).json()
    assert r["message"]["thinking"] == f"Thinking about: {prompt}"
    assert r["message"]["content"] == expected_reply(prompt)

    with httpx.stream("POST", f"{mock.url}/api/chat", json={**body, "stream": True}, timeout=10) as s:
        lines = [json.loads(line) for line in s.iter_lines() if line]
    thinking = [line for line in lines if line["message"].get("thinking")]
    content = [line for line in lines if line["message"]["content"]]
    assert lines.index(thinking[-1]) < lines.index(content[0]), "thinking must come before any content"
    assert all(line["message"]["content"] == "" for line in thinking)
    assert "".join(line["message"]["thinking"] for line in thinking) == f"Thinking about: {prompt}"
    assert "".join(line["message"]["content"] for line in content) == expected_reply(prompt)


def test_openai_reasoning_content(mock):
    prompt = f"why [[think]] {nonce()}"
    body = {"model": CHAT_MODEL, "messages": user(prompt), "stream": False}
    r = httpx.post(f"{mock.url}/v1/chat/completions", json=body, timeout=10).json()
    message = r["choices"][0]["message"]
    assert message["reasoning_content"] == f"Thinking about: {prompt}"
    assert message["content"] == expected_reply(prompt)

    with httpx.stream("POST", f"{mock.url}/v1/chat/completions", json={**body, "stream": True}, timeout=10) as s:
        deltas = [json.loads(e.data)["choices"][0]["delta"] for e in iter_sse(s.iter_lines()) if e.data != "[DONE]"]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert reasoning == f"Thinking about: {prompt}"
    last_reasoning = max(i for i, d in enumerate(deltas) if d.get("reasoning_content"))
    first_content = min(i for i, d in enumerate(deltas) if d.get("content"))
    assert last_reasoning < first_content
    assert "".join(d.get("content") or "" for d in deltas) == expected_reply(prompt)


# ---------------------------------------------------------------------------------------------
# What the mock received


def test_mock_records_requests(mock, claude):
    mock.reset()
    prompt = f"recorded {nonce()}"
    claude.messages.create(model=CHAT_MODEL, max_tokens=64, messages=user(prompt))
    raw = {"model": CHAT_MODEL, "max_tokens": 8, "messages": user(prompt)}
    httpx.post(f"{mock.url}/v1/messages", json=raw, timeout=10,
               headers={"x-api-key": "sk-ant-raw", "anthropic-version": "2023-06-01", "anthropic-beta": "b1"})
    httpx.post(f"{mock.url}/v1/chat/completions", json={"model": CHAT_MODEL, "messages": user(prompt)},
               headers={"Authorization": "Bearer sk-secret"}, timeout=10)
    httpx.get(f"{mock.url}/api/tags", timeout=10)

    recorded = httpx.get(f"{mock.url}/mock/requests", timeout=10).json()
    assert [r["path"] for r in recorded] == ["/v1/messages", "/v1/messages", "/v1/chat/completions", "/api/tags"]
    sdk, direct, openai_chat, tags = recorded
    # The SDK sends its key as x-api-key or (2.x) as a bearer token: either way only "set" is kept.
    assert "set" in (sdk["headers"].get("x-api-key"), sdk["headers"].get("authorization"))
    assert sdk["headers"]["anthropic-version"]  # the SDK's own date (2026-10-21 in 2.14)
    assert sdk["headers"]["content-type"] == "application/json"
    assert sdk["body"] == {"model": CHAT_MODEL, "max_tokens": 64, "messages": user(prompt)}
    assert direct == {
        "path": "/v1/messages",
        "headers": {"x-api-key": "set", "anthropic-version": "2023-06-01", "anthropic-beta": "b1",
                    "content-type": "application/json"},
        "body": raw,
    }
    assert openai_chat["headers"] == {"authorization": "set", "content-type": "application/json"}
    assert all(secret not in json.dumps(recorded) for secret in ("sk-secret", "sk-ant-test", "sk-ant-raw"))
    assert tags == {"path": "/api/tags", "headers": {}, "body": None}

    mock.reset()
    assert httpx.get(f"{mock.url}/mock/requests", timeout=10).json() == []
