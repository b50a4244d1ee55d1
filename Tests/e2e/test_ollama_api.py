"""Ollama's native API proxied by Sluice, driven with the official `ollama` client."""

from __future__ import annotations

import json

import ollama
import pytest

from e2e_support import CHAT_MODEL, EMBED_MODEL, MODELS, expected_reply, nonce, word_count


def test_chat(oll):
    prompt = f"Hi native {nonce()}"
    resp = oll.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}])
    reply = expected_reply(prompt)
    assert resp.done is True
    assert resp.message.role == "assistant"
    assert resp.message.content == reply
    assert resp.eval_count == word_count(reply)
    assert resp.prompt_eval_count == word_count(prompt)


def test_chat_stream(oll):
    prompt = f"Stream natively {nonce()}"
    parts = list(oll.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True))
    assert len(parts) >= 2, f"native stream was not incremental: {parts!r}"
    assert "".join(p.message.content for p in parts) == expected_reply(prompt)
    assert parts[-1].done is True
    assert all(p.done is False for p in parts[:-1])


def test_chat_format_json(oll):
    resp = oll.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": f"json {nonce()}"}], format="json")
    assert json.loads(resp.message.content) == {"answer": "mock"}


def test_chat_tools(oll):
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
    resp = oll.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": f"find {nonce()}"}], tools=[tool])
    calls = resp.message.tool_calls
    assert calls and len(calls) == 1
    assert calls[0].function.name == "lookup"
    assert dict(calls[0].function.arguments) == {"q": "mock"}


def test_generate(oll):
    prompt = f"Generate something {nonce()}"
    resp = oll.generate(model=CHAT_MODEL, prompt=prompt)
    assert resp.done is True
    assert resp.response == expected_reply(prompt)
    assert resp.eval_count == word_count(expected_reply(prompt))


def test_generate_stream(oll):
    prompt = f"Generate streaming {nonce()}"
    parts = list(oll.generate(model=CHAT_MODEL, prompt=prompt, stream=True))
    assert "".join(p.response for p in parts) == expected_reply(prompt)
    assert parts[-1].done is True


def test_embed(oll):
    resp = oll.embed(model=EMBED_MODEL, input=["alpha", "beta", "alpha"])
    assert len(resp.embeddings) == 3
    assert all(len(v) == 8 for v in resp.embeddings)
    assert resp.embeddings[0] == resp.embeddings[2]
    assert resp.embeddings[0] != resp.embeddings[1]


def test_embed_single_string(oll):
    resp = oll.embed(model=EMBED_MODEL, input="just one")
    assert len(resp.embeddings) == 1
    assert len(resp.embeddings[0]) == 8


def test_embeddings_legacy(oll):
    first = oll.embeddings(model=EMBED_MODEL, prompt="legacy text")
    again = oll.embeddings(model=EMBED_MODEL, prompt="legacy text")
    other = oll.embeddings(model=EMBED_MODEL, prompt="other text")
    assert len(first.embedding) == 8
    assert list(first.embedding) == list(again.embedding)
    assert list(first.embedding) != list(other.embedding)


def test_list(oll):
    names = {m.model for m in oll.list().models}
    assert set(MODELS) <= names, f"models listed: {sorted(names)}"


def test_show(oll):
    resp = oll.show(CHAT_MODEL)
    assert resp.details is not None
    assert resp.modelfile


def test_show_unknown_model_is_404(oll):
    with pytest.raises(ollama.ResponseError) as info:
        oll.show("no-such-model")
    assert info.value.status_code == 404


def test_chat_unknown_model_is_404(oll):
    with pytest.raises(ollama.ResponseError) as info:
        oll.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404


def test_version(http):
    # The ollama client has no version() call; /api/version is plain GET.
    r = http.get("/api/version")
    assert r.status_code == 200
    assert isinstance(r.json().get("version"), str) and r.json()["version"]
