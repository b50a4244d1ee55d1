"""Translation fidelity: nothing a client sends or an upstream answers is silently lost, and errors come in each
API's own shape."""

from __future__ import annotations

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
