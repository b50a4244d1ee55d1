"""The coding-agent surfaces (Anthropic Messages for Claude Code, OpenAI Responses for Codex CLI), driven by the
official `anthropic` and `openai` SDKs, over each upstream kind of `sluice mock-upstream`."""

from __future__ import annotations

import json
import sqlite3

import anthropic
import httpx
import openai
import pytest

from e2e_support import CHAT_MODEL, expected_reply, iter_sse, nonce, wait_until

MASTER = "sk-master-coding-agents"


@pytest.fixture(scope="module", params=["ollama", "openai", "anthropic"])
def kind_gateway(request, module_procs, tmp_path_factory):
    """A gateway over the mock spoken to as `kind`, recording into its own SQLite file."""
    mock = module_procs.start_mock()
    database = tmp_path_factory.mktemp(f"agents-{request.param}") / "sluice.db"
    gw = module_procs.start_gateway(
        upstream=mock.url,
        args=["--upstream-kind", request.param, "--database", f"sqlite:{database}", "--cache-ttl", "0"],
    )
    gw.database = database
    gw.kind = request.param
    gw.mock = mock
    return gw


def received(gw, path: str) -> dict:
    """The newest request the mock upstream received on `path`: path, headers (secrets as "set") and body."""
    requests = httpx.get(f"{gw.mock.url}/mock/requests", timeout=10).json()
    return next(r for r in reversed(requests) if r["path"] == path)


def claude(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="sk-anything", max_retries=0)


def codex(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="sk-anything", max_retries=0)


# --- Anthropic Messages ---------------------------------------------------------------------------


def test_messages_create(kind_gateway):
    prompt = f"hello claude {nonce()}"
    message = claude(kind_gateway).messages.create(
        model=CHAT_MODEL, max_tokens=200, system="You are terse.", messages=[{"role": "user", "content": prompt}]
    )
    assert message.id.startswith("msg_")
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == expected_reply(prompt)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_messages_reach_each_upstream_in_its_own_dialect(kind_gateway):
    """Both directions: what Claude Code sends arrives upstream with nothing lost, in the upstream's wire format."""
    prompt = f"[[think]] both ways {nonce()}"
    body = {
        "model": CHAT_MODEL, "max_tokens": 3000, "system": "You are terse.", "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [{"role": "user", "content": prompt}],
    }
    message = claude(kind_gateway).messages.create(**body)
    kinds = [block.type for block in message.content]
    assert "thinking" in kinds and "text" in kinds, kinds
    assert next(b for b in message.content if b.type == "thinking").thinking
    if kind_gateway.kind == "anthropic":
        got = received(kind_gateway, "/v1/messages")
        assert got["body"] == body  # passed through as sent
        assert got["headers"].get("anthropic-version")
    elif kind_gateway.kind == "ollama":
        got = received(kind_gateway, "/api/chat")["body"]
        assert got["messages"][0] == {"role": "system", "content": "You are terse."}
        assert got["messages"][-1]["content"] == prompt
        assert got["options"]["stop"] == ["END"] and got["options"]["num_predict"] == 3000
        assert got["think"] in (True, "low", "medium", "high")
    else:
        got = received(kind_gateway, "/v1/chat/completions")["body"]
        assert got["messages"][0]["role"] == "system" and "You are terse." in json.dumps(got["messages"][0])
        assert got["stop"] == ["END"]


# A 1x1 PNG: what a screenshot Claude Code or Codex attaches looks like on the wire, only smaller.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _image_reached(gw, text: str) -> None:
    """The newest upstream request carries the PNG as the upstream's own API takes images."""
    if gw.kind == "ollama":
        message = received(gw, "/api/chat")["body"]["messages"][-1]
        assert message["images"] == [PNG] and text in message["content"]
    elif gw.kind == "openai":
        parts = received(gw, "/v1/chat/completions")["body"]["messages"][-1]["content"]
        assert any(p["type"] == "image_url" and p["image_url"]["url"] == f"data:image/png;base64,{PNG}" for p in parts), parts
        assert any(p.get("text") == text for p in parts)
    else:
        blocks = received(gw, "/v1/messages")["body"]["messages"][-1]["content"]
        assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}} in blocks, blocks


def test_block_types_sluice_does_not_model_pass_through_to_an_anthropic_upstream(kind_gateway):
    """Claude Code reads PDFs as `document` blocks; only an Anthropic upstream can serve them, and it gets them as sent."""
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}
    body = {"model": CHAT_MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": [document, {"type": "text", "text": "sum up"}]}]}
    r = httpx.post(f"{kind_gateway.url}/v1/messages", json=body, timeout=30)
    if kind_gateway.kind == "anthropic":
        assert r.status_code == 200, r.text
        assert received(kind_gateway, "/v1/messages")["body"] == body
    else:
        assert r.status_code == 400 and "document" in r.json()["error"]["message"], r.text


def test_messages_images_reach_each_upstream(kind_gateway):
    text = f"what is in this image {nonce()}"
    message = claude(kind_gateway).messages.create(
        model=CHAT_MODEL, max_tokens=100,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": text},
        ]}],
    )
    assert message.content[0].type == "text"
    _image_reached(kind_gateway, text)


def test_responses_images_reach_each_upstream(kind_gateway):
    text = f"describe the screenshot {nonce()}"
    response = codex(kind_gateway).responses.create(
        model=CHAT_MODEL, store=False,
        input=[{"role": "user", "content": [
            {"type": "input_text", "text": text},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
        ]}],
    )
    assert response.output_text
    _image_reached(kind_gateway, text)


def test_messages_stream(kind_gateway):
    prompt = f"stream to claude {nonce()}"
    with claude(kind_gateway).messages.stream(
        model=CHAT_MODEL, max_tokens=200, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == expected_reply(prompt)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_messages_stream_events_have_anthropic_shapes(kind_gateway):
    body = {"model": CHAT_MODEL, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": f"shape {nonce()}"}]}
    with httpx.stream("POST", f"{kind_gateway.url}/v1/messages", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(iter_sse(r.iter_lines()))
    names = [e.event for e in events]
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    assert "content_block_start" in names and "content_block_stop" in names and "message_delta" in names
    for event in events:
        assert event.json()["type"] == event.event
    delta = next(e.json() for e in events if e.event == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"


def test_messages_tool_use_over_two_turns(kind_gateway):
    client = claude(kind_gateway)
    tools = [{
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }]
    first_turn = [{"role": "user", "content": f"[[tool]] weather in Paris? {nonce()}"}]
    first = client.messages.create(model=CHAT_MODEL, max_tokens=200, tools=tools, messages=first_turn)
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.id.startswith("toolu_") or call.id
    assert call.name == "get_weather"
    assert call.input == {"city": "mock"}
    second = client.messages.create(
        model=CHAT_MODEL, max_tokens=200, tools=tools,
        messages=first_turn + [
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
        ],
    )
    assert second.content, second


def test_messages_streamed_tool_arguments_arrive_whole(kind_gateway):
    tools = [{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}]
    with claude(kind_gateway).messages.stream(
        model=CHAT_MODEL, max_tokens=200, tools=tools, messages=[{"role": "user", "content": f"[[tool]] {nonce()}"}]
    ) as stream:
        final = stream.get_final_message()
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.input == {"q": "mock"}
    assert final.stop_reason == "tool_use"


def test_count_tokens(kind_gateway):
    counted = claude(kind_gateway).messages.count_tokens(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "count these words please " * 10}]
    )
    assert counted.input_tokens > 0


def test_messages_errors_use_anthropic_shapes(kind_gateway):
    client = claude(kind_gateway)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["type"] == "error"
    assert missing.value.body["error"]["type"] == "not_found_error"
    r = httpx.post(f"{kind_gateway.url}/v1/messages", json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]


def test_messages_are_recorded(kind_gateway):
    raw = claude(kind_gateway).messages.with_raw_response.create(
        model=CHAT_MODEL, max_tokens=50, messages=[{"role": "user", "content": f"record me {nonce()}"}]
    )
    request_id = raw.headers["x-request-id"]

    def record():
        with sqlite3.connect(kind_gateway.database) as db:
            return db.execute(
                "SELECT route, status, prompt_tokens, completion_tokens FROM usage_records WHERE request_id = ?", (request_id,)
            ).fetchone()

    route, status, prompt_tokens, completion_tokens = wait_until(record, "the /v1/messages record")
    assert route == "/v1/messages" and status == 200 and prompt_tokens > 0 and completion_tokens > 0


PRICED = {"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_prompt_cache_and_reasoning_tokens_are_recorded_and_priced(procs, tmp_path, kind):
    """What a hosted upstream read from or wrote to its prompt cache, and what it spent reasoning, lands in each
    call's record on every route, streamed or not, and cached input is priced at its own rate."""
    mock = procs.start_mock()
    database = tmp_path / "sluice.db"
    config = tmp_path / "sluice.json"
    config.write_text(json.dumps({"prices": {CHAT_MODEL: PRICED}}))
    gw = procs.start_gateway(
        upstream=mock.url,
        args=["--config", str(config), "--upstream-kind", kind, "--database", f"sqlite:{database}", "--cache-ttl", "0"],
    )
    prompt = f"[[cached]] [[think]] long prompt {nonce()}"
    messages = [{"role": "user", "content": prompt}]
    ids = []
    raw = claude(gw).messages.with_raw_response.create(model=CHAT_MODEL, max_tokens=200, messages=messages)
    ids.append(raw.headers["x-request-id"])
    with claude(gw).messages.with_streaming_response.create(model=CHAT_MODEL, max_tokens=200, messages=messages, stream=True) as r:
        ids.append(r.headers["x-request-id"])
        r.read()
    chat = openai.OpenAI(base_url=gw.v1, api_key="sk-anything", max_retries=0).chat.completions
    raw = chat.with_raw_response.create(model=CHAT_MODEL, messages=messages)
    ids.append(raw.headers["x-request-id"])
    answer = raw.parse()
    assert answer.usage.prompt_tokens_details.cached_tokens == 1024
    with chat.with_streaming_response.create(
        model=CHAT_MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    ) as r:
        ids.append(r.headers["x-request-id"])
        r.read()

    def records():
        with sqlite3.connect(database) as db:
            rows = db.execute(
                "SELECT request_id, route, stream, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, "
                "reasoning_tokens, cost_usd FROM usage_records"
            ).fetchall()
        found = {row[0]: row[1:] for row in rows}
        return found if all(i in found for i in ids) else None

    found = wait_until(records, "the four records")
    for request_id in ids:
        route, stream, prompt, completion, cached, written, reasoning, cost = found[request_id]
        assert cached == 1024, (route, stream)
        # Anthropic reports cache writes and no reasoning count; OpenAI the reverse.
        assert written == (256 if kind == "anthropic" else 0), (route, stream)
        assert (reasoning > 0) == (kind == "openai"), (route, stream, reasoning)
        assert prompt > cached + written and completion > 0
        expected = ((prompt - cached - written) * 3 + cached * 0.3 + written * 3.75 + completion * 15) / 1e6
        assert cost == pytest.approx(expected), (route, stream)


# --- OpenAI Responses -----------------------------------------------------------------------------


def test_responses_create(kind_gateway):
    prompt = f"hello codex {nonce()}"
    response = codex(kind_gateway).responses.create(model=CHAT_MODEL, input=prompt, instructions="Be brief.")
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == expected_reply(prompt)
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.usage.input_tokens_details.cached_tokens == 0


def test_responses_stream_events(kind_gateway):
    prompt = f"stream codex {nonce()}"
    events = list(codex(kind_gateway).responses.create(model=CHAT_MODEL, input=prompt, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[1] == "response.in_progress"
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == expected_reply(prompt)
    assert events[-1].response.usage.output_tokens > 0


def test_responses_function_tools_over_two_turns(kind_gateway):
    client = codex(kind_gateway)
    tools = [{
        "type": "function", "name": "shell", "description": "Run a command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    }]
    first = client.responses.create(model=CHAT_MODEL, input=f"[[tool]] list files {nonce()}", tools=tools)
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "shell"
    assert json.loads(call.arguments) == {"cmd": "mock"}
    assert call.call_id
    second = client.responses.create(
        model=CHAT_MODEL, tools=tools,
        input=[
            {"role": "user", "content": "list files"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "a.txt b.txt"},
        ],
    )
    assert second.status == "completed"


def test_responses_json_schema_output(kind_gateway):
    fmt = {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}}
    if kind_gateway.kind == "anthropic":
        # The Messages API has no response format: refused with the field named, never silently dropped.
        with pytest.raises(openai.BadRequestError) as refused:
            codex(kind_gateway).responses.create(model=CHAT_MODEL, input=f"give json {nonce()}", text=fmt)
        assert refused.value.body["param"] == "text.format"
        return
    response = codex(kind_gateway).responses.create(model=CHAT_MODEL, input=f"give json {nonce()}", text=fmt)
    assert json.loads(response.output_text) == {"answer": "mock"}


def test_responses_bad_input_names_the_field(kind_gateway):
    r = httpx.post(f"{kind_gateway.v1}/responses", json={"model": CHAT_MODEL, "input": 42})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "input"


# --- Keys, shared by every surface ----------------------------------------------------------------


def test_x_api_key_authenticates_the_anthropic_sdk(procs):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--master-key", MASTER])
    created = httpx.post(f"{gw.url}/admin/keys", json={"name": "claude"}, headers={"authorization": f"Bearer {MASTER}"})
    secret = created.json()["key"]
    message = anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0).messages.create(
        model=CHAT_MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(base_url=gw.url, api_key="sk-wrong", max_retries=0).messages.create(
            model=CHAT_MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.body["error"]["type"] == "authentication_error"


# --- Streams that break ---------------------------------------------------------------------------


def test_an_upstream_dying_mid_stream_ends_each_protocol_with_its_error_event(kind_gateway):
    words = " ".join(["word"] * 20)
    body = {"model": CHAT_MODEL, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": f"[[die]] {words} {nonce()}"}]}
    with httpx.stream("POST", f"{kind_gateway.url}/v1/messages", json=body, timeout=30) as r:
        events = list(iter_sse(r.iter_lines()))
    assert events[-1].event == "error", [e.event for e in events]
    assert events[-1].json()["type"] == "error"
    assert "message_stop" not in [e.event for e in events]

    body = {"model": CHAT_MODEL, "stream": True, "input": f"[[die]] {words} {nonce()}"}
    with httpx.stream("POST", f"{kind_gateway.v1}/responses", json=body, timeout=30) as r:
        events = list(iter_sse(r.iter_lines()))
    types = [e.json()["type"] for e in events]
    assert types[-1] == "response.failed", types
    assert "response.completed" not in types


@pytest.mark.parametrize("route", ["/v1/messages", "/v1/responses"])
def test_a_client_leaving_mid_stream_cancels_the_upstream_call(procs, tmp_path, route):
    """The upstream call is cancelled, and what the client received is still charged: an estimate, flagged."""
    mock = procs.start_mock()
    database = tmp_path / "sluice.db"
    gw = procs.start_gateway(upstream=mock.url, args=["--database", f"sqlite:{database}"])
    words = " ".join(["word"] * 100)
    body = {"model": CHAT_MODEL, "stream": True}
    if route == "/v1/messages":
        body |= {"max_tokens": 500, "messages": [{"role": "user", "content": f"[[slow]] {words} {nonce()}"}]}
    else:
        body |= {"input": f"[[slow]] {words} {nonce()}"}
    delta = "text_delta" if route == "/v1/messages" else "response.output_text.delta"
    with httpx.stream("POST", f"{gw.url}{route}", json=body, timeout=30) as r:
        request_id = r.headers["x-request-id"]
        seen = 0
        for line in r.iter_lines():
            # Data lines only: a Responses event names its type on its `event:` line too.
            seen += line.startswith("data:") and delta in line
            if seen >= 3:
                break  # some of the answer has arrived
    wait_until(lambda: mock.stats()["streams_cancelled"] >= 1, "the upstream stream to be cancelled")

    def record():
        with sqlite3.connect(database) as db:
            return db.execute(
                "SELECT status, completion_tokens, tokens_estimated FROM usage_records WHERE request_id = ?", (request_id,)
            ).fetchone()

    status, completion, estimated = wait_until(record, "the cut-short call's record")
    assert status == 499 and completion >= 3 and estimated == 1, (status, completion, estimated)


# --- The cache replays each protocol --------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_gateway(module_procs):
    mock = module_procs.start_mock()
    gw = module_procs.start_gateway(upstream=mock.url)
    gw.mock = mock
    return gw


def test_messages_cache_hit_replays_as_a_stream_and_whole(cached_gateway):
    prompt = f"cache me claude {nonce()}"
    body = {"model": CHAT_MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": prompt}]}
    with httpx.stream("POST", f"{cached_gateway.url}/v1/messages", json=body | {"stream": True}, timeout=30) as first:
        assert first.headers["x-cache"] == "MISS"
        list(first.iter_lines())
    client = anthropic.Anthropic(base_url=cached_gateway.url, api_key="x", max_retries=0)
    with client.messages.stream(**body) as replayed:
        text = "".join(replayed.text_stream)
        final = replayed.get_final_message()
    assert text == expected_reply(prompt)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    whole = client.messages.with_raw_response.create(**body)
    assert whole.headers["x-cache"] == "HIT"
    message = whole.parse()
    assert message.content[0].text == expected_reply(prompt)
    assert message.id.startswith("msg_") and message.id != final.id
    assert cached_gateway.mock.stats()["requests"].get("/api/chat", 0) >= 1


def test_responses_cache_hit_replays_as_a_stream(cached_gateway):
    prompt = f"cache me codex {nonce()}"
    client = openai.OpenAI(base_url=cached_gateway.v1, api_key="x", max_retries=0)
    first = client.responses.with_raw_response.create(model=CHAT_MODEL, input=prompt, store=False)
    assert first.headers["x-cache"] == "MISS"
    events = list(client.responses.create(model=CHAT_MODEL, input=prompt, stream=True, store=False))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == expected_reply(prompt)
    assert events[-1].response.id != first.parse().id


def test_ignored_advisory_fields_are_named_on_cache_hits_too(cached_gateway):
    body = {"model": CHAT_MODEL, "input": f"advisory {nonce()}", "store": False, "prompt_cache_key": "s1"}
    first = httpx.post(f"{cached_gateway.v1}/responses", json=body, timeout=30)
    again = httpx.post(f"{cached_gateway.v1}/responses", json=body, timeout=30)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert first.headers["x-sluice-ignored"] == again.headers["x-sluice-ignored"] == "prompt_cache_key"


# --- Stored conversations: previous_response_id across instances ------------------------------------


def test_previous_response_id_continues_on_another_instance_for_its_own_key_only(procs, database):
    mock = procs.start_mock()
    args = ["--database", database, "--master-key", MASTER]
    first_gw = procs.start_gateway(upstream=mock.url, args=args)
    second_gw = procs.start_gateway(upstream=mock.url, args=args)

    def new_key(name: str) -> str:
        done = procs.run_sluice("keys", "create", "--name", f"{name}-{nonce()[:6]}", "--database", database)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    owner, stranger = new_key("owner"), new_key("stranger")
    on_first = openai.OpenAI(base_url=first_gw.v1, api_key=owner, max_retries=0)
    on_second = openai.OpenAI(base_url=second_gw.v1, api_key=owner, max_retries=0)

    first = on_first.responses.create(model=CHAT_MODEL, input=f"My name is Ada {nonce()}", instructions="Be brief.")
    # Continued on the other instance, streamed, and at once from the streamed answer's id.
    events = list(on_second.responses.create(model=CHAT_MODEL, previous_response_id=first.id, input="What is my name?", stream=True))
    second = events[-1].response
    assert events[-1].type == "response.completed"
    third = on_first.responses.create(model=CHAT_MODEL, previous_response_id=second.id, input=f"And again? {nonce()}")
    assert third.status == "completed"

    # Another key sees none of it, and neither does a made-up id.
    other = openai.OpenAI(base_url=second_gw.v1, api_key=stranger, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model=CHAT_MODEL, previous_response_id=first.id, input="hi")
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        on_first.responses.create(model=CHAT_MODEL, previous_response_id="resp_unknown", input="hi")

    # GET and DELETE, by the owner, on either instance.
    assert on_second.responses.retrieve(first.id).id == first.id
    on_second.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        on_first.responses.retrieve(first.id)


def test_store_false_keeps_nothing(procs, tmp_path):
    mock = procs.start_mock()
    gw = procs.start_gateway(upstream=mock.url, args=["--database", f"sqlite:{tmp_path / 's.db'}"])
    client = codex(gw)
    kept = client.responses.create(model=CHAT_MODEL, input=f"kept {nonce()}")
    unkept = client.responses.create(model=CHAT_MODEL, input=f"not kept {nonce()}", store=False)
    assert client.responses.retrieve(kept.id).id == kept.id
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unkept.id)


@pytest.mark.parametrize("path,body", [
    ("/v1/messages", b'{"model":"llama3.2","model":"qwen2.5:0.5b","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'),
    ("/v1/messages", b'{"model":"llama3.2","mo\\u0064el":"qwen2.5:0.5b","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'),
    ("/v1/messages/count_tokens", b'{"model":"llama3.2","model":"qwen2.5:0.5b","messages":[{"role":"user","content":"hi"}]}'),
    ("/v1/responses", b'{"model":"llama3.2","model":"qwen2.5:0.5b","input":"hi"}'),
    ("/v1/messages", b'{"model":"llama3.2","max_tokens":10,"messages":[{"role":"user","content":"hi \\u0000 x"}]}'),
])
def test_the_coding_agent_routes_read_bodies_as_strictly_as_the_rest(kind_gateway, path, body):
    """A model key given twice would let an upstream that keeps the last copy serve a model the key may not use."""
    r = httpx.post(f"{kind_gateway.url}{path}", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    if path.startswith("/v1/messages"):
        assert r.json()["type"] == "error" and error["type"] == "invalid_request_error"
    else:
        assert error["code"] in ("duplicate_key", "invalid_value")


@pytest.mark.parametrize("extra,param", [
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{not json"},
                {"type": "function_call_output", "call_id": "c1", "output": "x"}]}, "arguments"),
    # Fields that change the answer and that no translating upstream takes.
    ({"max_tool_calls": 2}, "max_tool_calls"),
    ({"top_logprobs": 3}, "top_logprobs"),
])
def test_responses_fields_that_cannot_be_honoured_are_refused_by_name(kind_gateway, extra, param):
    if param == "arguments" and kind_gateway.kind != "ollama":
        pytest.skip("only Ollama needs arguments as a JSON object")
    body = {"model": CHAT_MODEL, "input": "hi"} | extra
    r = httpx.post(f"{kind_gateway.v1}/responses", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert param in r.json()["error"]["param"]


def test_an_overloaded_upstream_is_an_overloaded_error_to_claude(procs):
    """Anthropic's 529 (or a 503) from the upstream reaches Claude Code as `overloaded_error`, which it retries."""
    mock = procs.start_mock("--fail-status", "529")
    gw = procs.start_gateway(upstream=mock.url, args=["--upstream-kind", "anthropic"])
    r = httpx.post(
        f"{gw.url}/v1/messages", json={"model": CHAT_MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}, timeout=30
    )
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "overloaded_error"
    assert r.headers.get("retry-after")


def test_unknown_fields_are_refused_or_named_when_translated(kind_gateway):
    """A member the canonical model does not carry is a 400 naming it when the request is translated, and an
    advisory one is named in X-Sluice-Ignored; an upstream of the client's own dialect gets both as sent."""
    chat = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"fields {nonce()}"}]}
    r = httpx.post(f"{kind_gateway.v1}/chat/completions", json=chat | {"bogus": 1}, timeout=30)
    if kind_gateway.kind == "openai":
        assert r.status_code == 200 and received(kind_gateway, "/v1/chat/completions")["body"]["bogus"] == 1
    else:
        assert r.status_code == 400 and r.json()["error"]["param"] == "bogus", r.text
    r = httpx.post(f"{kind_gateway.v1}/chat/completions", json=chat | {"prompt_cache_key": "k", "top_k": 5}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-sluice-ignored") == (None if kind_gateway.kind == "openai" else "prompt_cache_key")
    if kind_gateway.kind == "ollama":
        assert received(kind_gateway, "/api/chat")["body"]["options"]["top_k"] == 5
    messages = {"model": CHAT_MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": f"fields {nonce()}"}]}
    r = httpx.post(f"{kind_gateway.url}/v1/messages", json=messages | {"mcp_servers": []}, timeout=30)
    if kind_gateway.kind == "anthropic":
        assert r.status_code == 200 and received(kind_gateway, "/v1/messages")["body"]["mcp_servers"] == []
    else:
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
        assert "mcp_servers" in r.json()["error"]["message"]
    r = httpx.post(f"{kind_gateway.url}/v1/messages", json=messages | {"service_tier": "auto"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-sluice-ignored") == (None if kind_gateway.kind == "anthropic" else "service_tier")


def test_a_tool_choice_naming_a_missing_tool_is_refused_on_every_upstream(kind_gateway):
    tools = [{"name": "a", "input_schema": {"type": "object"}}]
    r = httpx.post(
        f"{kind_gateway.url}/v1/messages",
        json={"model": CHAT_MODEL, "max_tokens": 20, "tools": tools, "tool_choice": {"type": "tool", "name": "b"},
              "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    if kind_gateway.kind == "anthropic":
        pytest.skip("an Anthropic upstream gets the body as sent and judges it itself")
    assert r.status_code == 400 and "tool_choice" in r.json()["error"]["message"], r.text
    r = httpx.post(
        f"{kind_gateway.v1}/responses",
        json={"model": CHAT_MODEL, "input": "hi", "tools": [{"type": "function", "name": "a", "parameters": {"type": "object"}}],
              "tool_choice": {"type": "function", "name": "b"}},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice", r.text


def test_codex_advisory_fields_are_served_and_named_as_ignored(kind_gateway):
    """Codex CLI sends `include`, `prompt_cache_key` and a reasoning summary style on every request. A translating
    upstream has no such knobs: the call is answered, and the response says which fields were left out."""
    r = httpx.post(
        f"{kind_gateway.v1}/responses",
        json={
            "model": CHAT_MODEL, "input": f"codex {nonce()}", "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "session-1", "reasoning": {"effort": "low", "summary": "auto"}, "store": False,
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-sluice-ignored"] == "include, prompt_cache_key, reasoning.summary"
    sent = received(kind_gateway, {"ollama": "/api/chat", "openai": "/v1/chat/completions", "anthropic": "/v1/messages"}[kind_gateway.kind])
    assert "prompt_cache_key" not in json.dumps(sent["body"])


def test_responses_passed_through_stay_with_their_key(procs, tmp_path):
    """An upstream that serves the Responses API itself (here, a second Sluice) gets the request as sent, but the
    conversation is kept per key by the gateway: another key can neither read nor continue it."""
    mock = procs.start_mock()
    inner = procs.start_gateway(upstream=mock.url, args=["--database", f"sqlite:{tmp_path / 'inner.db'}"])
    config = tmp_path / "outer.yaml"
    config.write_text(f"upstreams:\n  - name: hosted\n    url: {inner.url}\n    kind: openai\n    responses: true\n")
    database = f"sqlite:{tmp_path / 'outer.db'}"
    outer = procs.start_gateway(args=["--config", config, "--database", database, "--master-key", MASTER])

    def new_key(name: str) -> str:
        done = procs.run_sluice("keys", "create", "--name", name, "--database", database)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    owner = openai.OpenAI(base_url=outer.v1, api_key=new_key("owner"), max_retries=0)
    stranger = openai.OpenAI(base_url=outer.v1, api_key=new_key("stranger"), max_retries=0)
    first = owner.responses.create(model=CHAT_MODEL, input=f"remember Ada {nonce()}")
    streamed = list(owner.responses.create(model=CHAT_MODEL, previous_response_id=first.id, input="and now?", stream=True))
    second = streamed[-1].response
    assert streamed[-1].type == "response.completed"
    third = owner.responses.create(model=CHAT_MODEL, previous_response_id=second.id, input=f"once more {nonce()}")
    assert third.status == "completed"
    # The upstream got the whole conversation, and was told not to keep its own copy.
    sent = next(r for r in reversed(httpx.get(f"{mock.url}/mock/requests").json()) if r["path"] == "/api/chat")["body"]
    assert "remember Ada" in json.dumps(sent["messages"]) and "once more" in json.dumps(sent["messages"])
    for response_id in (first.id, second.id):
        with pytest.raises(openai.NotFoundError):
            stranger.responses.retrieve(response_id)
        with pytest.raises(openai.NotFoundError):
            stranger.responses.create(model=CHAT_MODEL, previous_response_id=response_id, input="hi")
    assert owner.responses.retrieve(second.id).id == second.id
