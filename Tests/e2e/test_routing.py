"""Several upstreams: failover when one dies, retries of 5xx, the circuit breaker, model routing and aliases."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from e2e_support import CHAT_MODEL, chat_body, expected_reply, make_ollama, make_openai, nonce, wait_until


def write_config(tmp_path, upstreams, aliases=None):
    """A YAML config listing `upstreams` as (name, url, models) triples."""
    lines = ["upstreams:"]
    for name, url, models in upstreams:
        lines += [f"  - name: {name}", f"    url: {url}", "    kind: ollama"]
        if models:
            lines.append("    models: [" + ", ".join(models) + "]")
    if aliases:
        lines.append("aliases:")
        lines += [f"  {alias}: {target}" for alias, target in aliases.items()]
    path = tmp_path / "sluice.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def generated(mock) -> int:
    return mock.stats()["requests"].get("/api/chat", 0)


def chat(client: httpx.Client, model: str = CHAT_MODEL) -> httpx.Response:
    prompt = f"hi {nonce()}"
    r = client.post("/v1/chat/completions", json=chat_body(prompt, model=model))
    if r.status_code == 200:
        assert r.json()["choices"][0]["message"]["content"] == expected_reply(prompt)
    return r


def upstream_states(client: httpx.Client) -> dict:
    return {u["name"]: u["state"] for u in client.get("/readyz").json()["upstreams"]}


def test_killed_upstream_loses_no_request(procs, tmp_path):
    # Both have the model loaded, so the gateway's model-aware routing shares traffic between them.
    a, b = procs.start_mock("--loaded", "llama3.2:latest"), procs.start_mock("--loaded", "llama3.2:latest")
    config = write_config(tmp_path, [("a", a.url, []), ("b", b.url, [])])
    gw = procs.start_gateway(args=["--config", config])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        failures = []
        for _ in range(20):
            r = chat(client)
            if r.status_code != 200:
                failures.append(r.text)
        wait_until(lambda: generated(a) > 0 and generated(b) > 0, "both upstreams to take traffic")
        a.process.stop()
        for _ in range(40):
            r = chat(client)
            if r.status_code != 200:
                failures.append(r.text)
        assert failures == []
        served_by_b = generated(b)
        assert served_by_b >= 40


def test_upstream_killed_under_concurrent_load_loses_no_request(procs, tmp_path):
    """SIGKILL one of two upstreams while eight clients keep calling: requests in flight to it are retried on the
    other before their first byte, later ones avoid it, and no client sees an error."""
    a = procs.start_mock("--latency-ms", "5", "--loaded", "llama3.2:latest")
    b = procs.start_mock("--latency-ms", "5", "--loaded", "llama3.2:latest")
    config = write_config(tmp_path, [("a", a.url, []), ("b", b.url, [])])
    gw = procs.start_gateway(args=["--config", config])
    stop = threading.Event()
    failures: list[str] = []
    answered = [0]
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = chat(client)
                    ok, detail = r.status_code == 200, r.text
                except (httpx.HTTPError, AssertionError) as e:
                    ok, detail = False, repr(e)
                with lock:
                    answered[0] += 1
                    if not ok:
                        failures.append(detail)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(8):
            pool.submit(worker)
        try:
            wait_until(lambda: generated(a) > 10 and generated(b) > 10, "both upstreams to take traffic")
            a.process.signal(signal.SIGKILL)
            after_kill = generated(b)
            wait_until(lambda: generated(b) > after_kill + 200, "the survivor to take the load")
        finally:
            stop.set()
    assert answered[0] > 200
    assert failures == []
    # Calls did reach the dead upstream and fail there: the zero above is the retries' doing.
    metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
    assert any(line.startswith('sluice_upstream_errors_total{') and 'upstream="a"' in line
               for line in metrics.splitlines()), metrics


def test_failing_upstream_is_retried_then_avoided(procs, tmp_path):
    bad, good = procs.start_mock("--fail-status", "500"), procs.start_mock()
    config = write_config(tmp_path, [("bad", bad.url, []), ("good", good.url, [])])
    # The bad mock still answers probes, which would close its breaker again: passive counting only here.
    gw = procs.start_gateway(args=["--config", config, "--probe-interval", "0"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for _ in range(30):
            r = chat(client)
            assert r.status_code == 200, r.text
        # Three failures in a row open the bad upstream's breaker; the cool-down outlasts this test.
        wait_until(lambda: upstream_states(client)["bad"] == "open", "the bad upstream's breaker to open")
        assert upstream_states(client)["good"] == "closed"
        metrics = client.get("/metrics").text
        assert 'sluice_upstream_state{upstream="bad"} 2' in metrics
        assert 'sluice_upstream_state{upstream="good"} 0' in metrics
        before = generated(bad)
        for _ in range(10):
            assert chat(client).status_code == 200
        assert generated(bad) == before


def test_client_error_is_not_retried(procs, tmp_path):
    a, b = procs.start_mock("--fail-status", "400"), procs.start_mock("--fail-status", "400")
    config = write_config(tmp_path, [("a", a.url, []), ("b", b.url, [])])
    gw = procs.start_gateway(args=["--config", config])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        assert chat(client).status_code == 400
    assert generated(a) + generated(b) == 1


def test_model_routing_and_alias(procs, tmp_path):
    a = procs.start_mock("--model", "llama3.2:latest")
    b = procs.start_mock("--model", "qwen2.5:0.5b")
    config = write_config(
        tmp_path, [("a", a.url, ["llama3.2"]), ("b", b.url, ["qwen2.5:0.5b"])], aliases={"gpt-4o-mini": "qwen2.5:0.5b"}
    )
    gw = procs.start_gateway(args=["--config", config])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for _ in range(5):
            assert chat(client, model="qwen2.5:0.5b").status_code == 200
        assert generated(b) == 5 and generated(a) == 0
        for _ in range(3):
            assert chat(client, model="llama3.2").status_code == 200
        assert generated(a) == 3
        r = chat(client, model="gpt-4o-mini")
        assert r.status_code == 200, r.text
        assert generated(b) == 6
        # Native requests carry the model in the body the gateway forwards: the alias is rewritten there too.
        r = client.post("/api/chat", json={"model": "gpt-4o-mini", "stream": False,
                                           "messages": [{"role": "user", "content": f"hi {nonce()}"}]})
        assert r.status_code == 200, r.text
        assert generated(b) == 7
        r = chat(client, model="mistral")
        assert r.status_code == 404


def test_model_lists_span_every_upstream(procs, tmp_path):
    a = procs.start_mock("--model", "llama3.2:latest", "--model", "qwen2.5:0.5b")
    b = procs.start_mock("--model", "qwen2.5:0.5b", "--model", "phi3:mini")
    config = write_config(tmp_path, [("a", a.url, []), ("b", b.url, [])])
    gw = procs.start_gateway(args=["--config", config])
    # What the official clients list is what the gateway routes: each upstream's models, each once.
    listed = [m.model for m in make_ollama(gw).list().models]
    assert listed == ["llama3.2:latest", "qwen2.5:0.5b", "phi3:mini"]
    assert [m.id for m in make_openai(gw).models.list().data] == listed
