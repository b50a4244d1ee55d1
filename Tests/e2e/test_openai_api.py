"""The OpenAI-compatible API, driven with the official `openai` client."""

from __future__ import annotations

import json

import openai
import pytest

from e2e_support import CHAT_MODEL, EMBED_MODEL, MODELS, expected_reply, nonce, word_count


def test_chat_completion_content_and_usage(oai):
    prompt = f"Hello there {nonce()}"
    system = "Be brief"
    resp = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
    )
    reply = expected_reply(prompt)
    assert resp.object == "chat.completion"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == reply
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == word_count(reply)
    assert resp.usage.prompt_tokens == word_count(system) + word_count(prompt)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_stream_reassembles_to_full_text(oai):
    prompt = f"Stream this please {nonce()}"
    stream = oai.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == expected_reply(prompt)


def test_chat_stream_arrives_in_several_chunks(oai):
    prompt = f"several chunks {nonce()}"
    stream = oai.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True
    )
    contents = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    # The mock sends one chunk per word; the gateway must relay them, not buffer one blob.
    assert len(contents) >= 2, f"stream was not incremental: {contents!r}"


def test_chat_stream_finish_reason_stop(oai):
    prompt = f"finish {nonce()}"
    stream = oai.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True
    )
    reasons = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
    assert reasons == ["stop"]


def test_chat_stream_include_usage_final_chunk(oai):
    prompt = f"count my tokens {nonce()}"
    chunks = list(
        oai.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks, "empty stream"
    last = chunks[-1]
    assert last.choices == [], f"final usage chunk has choices: {last}"
    assert last.usage is not None, f"final chunk has no usage: {last}"
    reply = expected_reply(prompt)
    assert last.usage.completion_tokens == word_count(reply)
    assert last.usage.prompt_tokens == word_count(prompt)
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1]), "usage appeared before the final chunk"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "unit"],
        },
    },
}


def test_tool_call_is_returned(oai):
    resp = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": f"Weather in Paris? {nonce()}"}],
        tools=[WEATHER_TOOL],
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls, f"no tool_calls in {choice.message}"
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id, "tool call has no id"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock", "unit": "mock"}
    assert not choice.message.content


def test_tool_call_round_trip(oai):
    question = f"Weather in Paris? {nonce()}"
    messages = [{"role": "user", "content": question}]
    first = oai.chat.completions.create(model=CHAT_MODEL, messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'})
    second = oai.chat.completions.create(model=CHAT_MODEL, messages=messages)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("Hello from the Sluice mock.")


def test_tool_call_streamed(oai):
    stream = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": f"Weather in Rome? {nonce()}"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    name, arguments, reasons = "", "", []
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for tc in choice.delta.tool_calls or []:
            if tc.function is not None:
                name += tc.function.name or ""
                arguments += tc.function.arguments or ""
        if choice.finish_reason:
            reasons.append(choice.finish_reason)
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "mock", "unit": "mock"}
    assert reasons == ["tool_calls"]


def test_response_format_json_object(oai):
    resp = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": f"Answer in JSON {nonce()}"}],
        response_format={"type": "json_object"},
    )
    content = resp.choices[0].message.content
    assert content == '{"answer":"mock"}'
    assert json.loads(content) == {"answer": "mock"}


def test_completions(oai):
    prompt = f"Once upon a time {nonce()}"
    resp = oai.completions.create(model=CHAT_MODEL, prompt=prompt)
    reply = expected_reply(prompt)
    assert resp.object == "text_completion"
    assert resp.choices[0].text == reply
    assert resp.usage.completion_tokens == word_count(reply)
    assert resp.usage.prompt_tokens == word_count(prompt)


def test_completions_stream(oai):
    prompt = f"Stream a completion {nonce()}"
    stream = oai.completions.create(model=CHAT_MODEL, prompt=prompt, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == expected_reply(prompt)


def test_embeddings_shape(oai):
    resp = oai.embeddings.create(model=EMBED_MODEL, input=["first text", "second text"])
    assert resp.object == "list"
    assert [d.index for d in resp.data] == [0, 1]
    for item in resp.data:
        assert len(item.embedding) == 8
        assert all(isinstance(x, float) for x in item.embedding)
    assert resp.usage.prompt_tokens >= 1


def test_embeddings_deterministic(oai):
    a1 = oai.embeddings.create(model=EMBED_MODEL, input="the same text").data[0].embedding
    a2 = oai.embeddings.create(model=EMBED_MODEL, input="the same text").data[0].embedding
    b = oai.embeddings.create(model=EMBED_MODEL, input="a different text").data[0].embedding
    assert a1 == a2
    assert a1 != b


def test_models_list(oai):
    ids = {m.id for m in oai.models.list()}
    assert set(MODELS) <= ids, f"models listed: {sorted(ids)}"


def test_models_retrieve(oai):
    model = oai.models.retrieve("qwen2.5:0.5b")
    assert model.id == "qwen2.5:0.5b"
    assert model.object == "model"


def test_models_retrieve_unknown_is_404(oai):
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("no-such-model:7b")
    assert info.value.status_code == 404


def test_chat_unknown_model_is_404(oai):
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
