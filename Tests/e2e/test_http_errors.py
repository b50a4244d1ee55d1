"""Request validation, HTTP semantics and request IDs, checked with raw httpx requests."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from e2e_support import CHAT_MODEL, assert_openai_error, chat_body, nonce


def test_healthz(http):
    r = http.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_invalid_json_is_400(http):
    r = http.post("/v1/chat/completions", content=b'{"model": "llama3.2", "messages": [',
                  headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400, code="invalid_json")


def test_wrong_type_is_400_naming_the_field(http):
    r = http.post("/v1/chat/completions", json=chat_body("hi", temperature="hot"))
    error = assert_openai_error(r, 400, code="invalid_type", param="temperature")
    assert "temperature" in error["message"]


def test_out_of_range_value_is_400(http):
    r = http.post("/v1/chat/completions", json=chat_body("hi", temperature=5))
    assert_openai_error(r, 400, code="invalid_value", param="temperature")


@pytest.mark.parametrize("missing", ["model", "messages"])
def test_missing_field_is_400(http, missing):
    body = chat_body("hi")
    del body[missing]
    r = http.post("/v1/chat/completions", json=body)
    error = assert_openai_error(r, 400, code="missing_field", param=missing)
    assert missing in error["message"]


def test_invalid_request_via_openai_client_is_bad_request(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "x"}], temperature=5)
    assert info.value.status_code == 400
    assert info.value.param == "temperature"


def test_unknown_model_is_404(http):
    r = http.post("/v1/chat/completions", json=chat_body("hi", model="no-such-model"))
    assert_openai_error(r, 404, code="model_not_found")


def test_huge_body_is_413(http):
    filler = "x" * (5 * 1024 * 1024)  # default limit is 4 MiB
    body = json.dumps(chat_body(filler)).encode()
    r = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert_openai_error(r, 413, code="request_too_large")


def test_unknown_route_is_404(http):
    r = http.get("/v1/no-such-route")
    assert_openai_error(r, 404)


def test_wrong_method_is_405(http):
    r = http.get("/v1/chat/completions")
    assert_openai_error(r, 405)
    assert r.headers["allow"] == "POST"
    r = http.post("/v1/responses/resp_1", json={})
    assert r.status_code == 405 and r.headers["allow"] == "GET, DELETE"


def test_request_id_is_echoed(http):
    r = http.get("/healthz", headers={"X-Request-ID": "test-123"})
    assert r.headers.get("x-request-id") == "test-123"


def test_request_id_is_echoed_on_proxied_request(http):
    r = http.post("/v1/chat/completions", json=chat_body(f"id {nonce()}"), headers={"X-Request-ID": "test-chat-456"})
    assert r.status_code == 200
    assert r.headers.get("x-request-id") == "test-chat-456"


def test_request_id_is_generated(http):
    first = http.get("/healthz").headers.get("x-request-id")
    second = http.get("/healthz").headers.get("x-request-id")
    assert first and second
    assert first != second


def test_request_id_on_error_response(http):
    r = http.get("/v1/no-such-route", headers={"X-Request-ID": "test-err-789"})
    assert r.status_code == 404
    assert r.headers.get("x-request-id") == "test-err-789"


def test_insane_request_id_is_replaced(http):
    bad = "not a sane id <script>" + "x" * 300
    r = http.get("/healthz", headers={"X-Request-ID": bad})
    rid = r.headers.get("x-request-id")
    assert rid, "no X-Request-ID on the response"
    assert rid != bad


def test_max_body_bytes_from_env(procs, mock):
    gw = procs.start_gateway(upstream=mock.url, env={"SLUICE_MAX_BODY_BYTES": "2KiB"})
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        small = client.post("/v1/chat/completions", json=chat_body(f"small {nonce()}"))
        assert small.status_code == 200, small.text
        big = client.post("/v1/chat/completions", json=chat_body("y" * 4096))
        assert_openai_error(big, 413, code="request_too_large")
