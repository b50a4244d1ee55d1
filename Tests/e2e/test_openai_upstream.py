"""A gateway in front of an OpenAI-compatible upstream (--upstream-kind openai): requests pass through."""

from __future__ import annotations

import openai
import pytest

from e2e_support import CHAT_MODEL, EMBED_MODEL, MODELS, assert_openai_error, chat_body, expected_reply, iter_sse, nonce, word_count


@pytest.fixture(scope="module")
def gateway(module_procs, mock):
    # Overrides the default pair's gateway: same mock, spoken to through its OpenAI API.
    return module_procs.start_gateway(upstream=mock.url, args=["--upstream-kind", "openai"])


def test_chat(oai):
    prompt = f"Through openai kind {nonce()}"
    resp = oai.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}])
    assert resp.choices[0].message.content == expected_reply(prompt)
    assert resp.usage.completion_tokens == word_count(expected_reply(prompt))


def test_chat_stream_with_usage(oai):
    prompt = f"Stream through openai kind {nonce()}"
    chunks = list(
        oai.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected_reply(prompt)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == word_count(prompt)


def test_embeddings(oai):
    resp = oai.embeddings.create(model=EMBED_MODEL, input=["one", "two"])
    assert [len(d.embedding) for d in resp.data] == [8, 8]


def test_models_list(oai):
    assert set(MODELS) <= {m.id for m in oai.models.list()}


def test_unknown_model_is_404(oai):
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_upstream_500_is_502(http):
    r = http.post("/v1/chat/completions", json=chat_body(f"[[error]] {nonce()}"))
    assert_openai_error(r, 502, code="upstream_error")


def test_upstream_dies_mid_stream(http):
    with http.stream("POST", "/v1/chat/completions", json=chat_body(f"[[die]] {nonce()}", stream=True)) as r:
        assert r.status_code == 200
        events = list(iter_sse(r.iter_lines()))
    assert all(e.data != "[DONE]" for e in events), f"a failed stream ended with [DONE]: {events}"
    assert events and events[-1].event == "error", f"last event is not an error event: {events[-3:]}"


def test_readyz(http):
    assert http.get("/readyz").status_code == 200
