"""Local-first scheduling over several `sluice mock-upstream` processes that report loaded models, take time to
load a cold one and to reprocess a prompt they have not cached: model-aware routing, conversation affinity,
virtual models, the context guard, priorities, overflow and warm-up."""

from __future__ import annotations

import signal

import httpx

from e2e_support import chat_body, expected_reply, nonce, wait_until

MODEL = "llama3.2:latest"


def write_config(tmp_path, upstreams, extra: str = "") -> str:
    """A YAML config: `upstreams` as (name, url) pairs of Ollama mocks, then `extra` YAML as is."""
    lines = ["upstreams:"]
    for name, url in upstreams:
        lines += [f"  - name: {name}", f"    url: {url}", "    kind: ollama"]
    path = tmp_path / "sluice.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return str(path)


def chats(mock) -> int:
    return mock.stats()["requests"].get("/api/chat", 0)


def readiness(gw) -> dict:
    return {u["name"]: u for u in httpx.get(f"{gw.url}/readyz", timeout=10).json()["upstreams"]}


def loaded_on(gw, name: str) -> list:
    return readiness(gw)[name].get("loaded_models")


def served_by(mocks: dict, send) -> str:
    """Runs `send` and returns the name of the one mock whose chat count went up."""
    before = {name: chats(m) for name, m in mocks.items()}
    send()
    moved = [name for name, m in mocks.items() if chats(m) > before[name]]
    assert len(moved) == 1, f"expected one upstream to answer, saw {moved}"
    return moved[0]


def test_request_goes_to_the_upstream_with_the_model_loaded(procs, tmp_path):
    cold = procs.start_mock("--load-ms", "300")
    warm = procs.start_mock("--loaded", MODEL, "--load-ms", "300")
    config = write_config(tmp_path, [("cold", cold.url), ("warm", warm.url)])
    gw = procs.start_gateway(args=["--config", config, "--probe-interval", "200ms"])
    wait_until(lambda: loaded_on(gw, "warm") == [MODEL] and loaded_on(gw, "cold") == [], "the probes to read /api/ps")
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for _ in range(12):
            prompt = f"hi {nonce()}"
            r = client.post("/v1/chat/completions", json=chat_body(prompt))
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == expected_reply(prompt)
        metrics = client.get("/metrics").text
    assert chats(cold) == 0 and chats(warm) == 12
    assert cold.stats()["loads"] == 0
    assert any(
        line.startswith("sluice_upstream_model_loaded{") and 'upstream="warm"' in line and f'model="{MODEL}"' in line
        and float(line.rsplit(" ", 1)[1]) == 1
        for line in metrics.splitlines()
    ), metrics


def test_a_model_nobody_has_goes_where_fewest_are_loaded_and_is_then_known_there(procs, tmp_path):
    busy = procs.start_mock("--loaded", "qwen2.5:0.5b", "--loaded", "nomic-embed-text:latest")
    free = procs.start_mock()
    config = write_config(tmp_path, [("busy", busy.url), ("free", free.url)])
    gw = procs.start_gateway(args=["--config", config, "--probe-interval", "200ms"])
    wait_until(lambda: loaded_on(gw, "busy") is not None and len(loaded_on(gw, "busy")) == 2 and loaded_on(gw, "free") == [],
               "the probes to read /api/ps")
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        r = client.post("/v1/chat/completions", json=chat_body(f"hi {nonce()}"))
        assert r.status_code == 200, r.text
    assert chats(free) == 1 and chats(busy) == 0
    # The answer tells the gateway the model is now loaded there, and /api/ps confirms it.
    wait_until(lambda: MODEL in loaded_on(gw, "free"), "the gateway to see the model loaded")


def converse(client: httpx.Client, mocks: dict, turns: int, headers=None, first=None) -> list:
    """Holds a conversation of `turns` turns, each sending the whole history; returns who served each turn."""
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": first or f"hello {nonce()}"}]
    servers = []
    for turn in range(turns):
        def send():
            r = client.post("/v1/chat/completions", json={"model": "llama3.2", "messages": messages}, headers=headers or {})
            assert r.status_code == 200, r.text
            messages.append(r.json()["choices"][0]["message"])
        servers.append(served_by(mocks, send))
        messages.append({"role": "user", "content": f"and then {turn}?"})
    return servers


def test_turn_two_goes_where_turn_one_went_and_elsewhere_when_it_dies(procs, tmp_path):
    a = procs.start_mock("--loaded", MODEL, "--prompt-cache-miss-ms", "1")
    b = procs.start_mock("--loaded", MODEL, "--prompt-cache-miss-ms", "1")
    mocks = {"a": a, "b": b}
    config = write_config(tmp_path, [("a", a.url), ("b", b.url)])
    gw = procs.start_gateway(args=["--config", config, "--probe-interval", "200ms"])
    wait_until(lambda: loaded_on(gw, "a") == [MODEL] and loaded_on(gw, "b") == [MODEL], "the probes to read /api/ps")
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        # Identified by the opening (hash of model, system prompt, first message), by a header, by `user`.
        for _ in range(6):
            servers = converse(client, mocks, 3)
            assert len(set(servers)) == 1, servers
        same_opening = "hello again"
        one = converse(client, mocks, 2, headers={"x-session-id": f"s-{nonce()}"}, first=same_opening)
        assert len(set(one)) == 1, one
        # The mock's prompt cache was hit on every later turn: each went where its history was.
        # (Only a first turn can miss, the first time each mock sees the system prompt.)
        assert a.stats()["prompt_cache_misses"] + b.stats()["prompt_cache_misses"] <= 2

        # A conversation whose upstream dies carries on elsewhere, and stays there.
        messages = [{"role": "user", "content": f"long talk {nonce()}"}]

        def turn():
            r = client.post("/v1/chat/completions", json={"model": "llama3.2", "messages": messages})
            assert r.status_code == 200, r.text
            messages.append(r.json()["choices"][0]["message"])
            messages.append({"role": "user", "content": f"more {nonce()}"})

        first = served_by(mocks, turn)
        other = "b" if first == "a" else "a"
        mocks[first].process.signal(signal.SIGKILL)
        mocks[first].process.wait()
        survivors = {other: mocks[other]}
        assert served_by(survivors, turn) == other
        assert served_by(survivors, turn) == other


VIRTUAL_MODELS = """models:
  coder:
    model: llama3.2:latest
    num_ctx: 8192
    keep_alive: 30m
    think: false
    temperature: 0.3
    max_tokens: 64
    system: You are terse.
  pinned:
    model: llama3.2:latest
    temperature: 0.1
    override: false
  small:
    model: llama3.2:latest
    num_ctx: 256
"""


def last_sent(mock, path: str) -> dict:
    entries = [e for e in httpx.get(f"{mock.url}/mock/requests", timeout=10).json() if e["path"] == path]
    assert entries, f"the mock received no {path}"
    return entries[-1]["body"]


def test_virtual_model_defaults_reach_the_upstream_and_client_values_override_them(procs, tmp_path):
    m = procs.start_mock()
    config = write_config(tmp_path, [("local", m.url)], VIRTUAL_MODELS)
    gw = procs.start_gateway(args=["--config", config])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        ids = [model["id"] for model in client.get("/v1/models").json()["data"]]
        assert {"coder", "pinned", "small"} <= set(ids) and MODEL in ids
        assert client.get("/v1/models/coder").json()["id"] == "coder"

        prompt = f"hi {nonce()}"
        r = client.post("/v1/chat/completions", json=chat_body(prompt, model="coder"))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == expected_reply(prompt)
        sent = last_sent(m, "/api/chat")
        assert sent["model"] == MODEL
        assert sent["options"]["num_ctx"] == 8192 and sent["options"]["temperature"] == 0.3
        assert sent["options"]["num_predict"] == 64
        assert sent["keep_alive"] == "30m" and sent["think"] is False
        assert sent["messages"][0] == {"role": "system", "content": "You are terse."}

        # The client's own values win over defaults; its system prompt follows the prefix.
        body = chat_body(f"hi {nonce()}", model="coder", temperature=0.9, max_tokens=10)
        body["messages"].insert(0, {"role": "system", "content": "Answer in French."})
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        sent = last_sent(m, "/api/chat")
        assert sent["options"]["temperature"] == 0.9 and sent["options"]["num_predict"] == 10
        assert sent["options"]["num_ctx"] == 8192
        assert sent["messages"][0]["content"] == "You are terse.\n\nAnswer in French."

        # override: false pins the default.
        assert client.post("/v1/chat/completions", json=chat_body(f"hi {nonce()}", model="pinned", temperature=0.9)).status_code == 200
        assert last_sent(m, "/api/chat")["options"]["temperature"] == 0.1

        # The native API takes the same defaults.
        r = client.post("/api/chat", json={"model": "coder", "messages": [{"role": "user", "content": f"hi {nonce()}"}], "stream": False})
        assert r.status_code == 200, r.text
        sent = last_sent(m, "/api/chat")
        assert sent["model"] == MODEL and sent["options"]["num_ctx"] == 8192 and sent["keep_alive"] == "30m"

        # So does Anthropic's Messages API (what Claude Code speaks), translated for the Ollama upstream.
        r = client.post("/v1/messages", json={"model": "coder", "max_tokens": 20, "messages": [{"role": "user", "content": f"hi {nonce()}"}]})
        assert r.status_code == 200, r.text
        sent = last_sent(m, "/api/chat")
        assert sent["model"] == MODEL and sent["options"]["num_ctx"] == 8192 and sent["options"]["temperature"] == 0.3
        assert sent["keep_alive"] == "30m" and sent["think"] is False
        assert sent["messages"][0] == {"role": "system", "content": "You are terse."}

        # And the Responses API (what Codex CLI speaks).
        r = client.post("/v1/responses", json={"model": "coder", "input": f"hi {nonce()}", "instructions": "Use French."})
        assert r.status_code == 200, r.text
        sent = last_sent(m, "/api/chat")
        assert sent["model"] == MODEL and sent["options"]["num_ctx"] == 8192 and sent["options"]["num_predict"] == 64
        assert sent["messages"][0] == {"role": "system", "content": "You are terse.\n\nUse French."}


def long_prompt(words: int) -> str:
    return " ".join(f"word{i}" for i in range(words)) + " " + nonce()


def test_context_policy_warn_forwards_with_a_warning(procs, tmp_path):
    m = procs.start_mock()
    config = write_config(tmp_path, [("local", m.url)], VIRTUAL_MODELS)
    gw = procs.start_gateway(args=["--config", config])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        r = client.post("/v1/chat/completions", json=chat_body(long_prompt(400), model="small"))
        assert r.status_code == 200, r.text
        assert "256" in r.headers["x-sluice-warning"]
        r = client.post("/v1/chat/completions", json=chat_body("short", model="small"))
        assert r.status_code == 200 and "x-sluice-warning" not in r.headers
    assert "prompt longer than the model's context" in gw.process.stdout()


def test_context_policy_reject_answers_400_naming_the_sizes(procs, tmp_path):
    m = procs.start_mock("--loaded", MODEL, "--context-length", "512")
    config = write_config(tmp_path, [("local", m.url)], VIRTUAL_MODELS)
    gw = procs.start_gateway(args=["--config", config, "--context-policy", "reject", "--probe-interval", "200ms"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        r = client.post("/v1/chat/completions", json=chat_body(long_prompt(400), model="small"))
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "context_length_exceeded" and "256" in error["message"]
        # Without num_ctx, the context length the upstream reports on /api/ps is the limit.
        wait_until(lambda: loaded_on(gw, "local") == [MODEL], "the probe to read /api/ps")
        r = client.post("/v1/chat/completions", json=chat_body(long_prompt(1000)))
        assert r.status_code == 400 and "512" in r.json()["error"]["message"], r.text
        # The native API answers in its own shape.
        r = client.post("/api/chat", json={"model": "small", "messages": [{"role": "user", "content": long_prompt(400)}]})
        assert r.status_code == 400 and "256" in r.json()["error"], r.text
        assert client.post("/v1/chat/completions", json=chat_body("short", model="small")).status_code == 200
    assert m.stats()["requests"].get("/api/chat", 0) == 1


def test_context_policy_raise_sets_num_ctx_up_to_the_maximum(procs, tmp_path):
    m = procs.start_mock()
    config = write_config(tmp_path, [("local", m.url)], VIRTUAL_MODELS)
    gw = procs.start_gateway(args=["--config", config, "--context-policy", "raise", "--context-max", "4096"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        r = client.post("/v1/chat/completions", json=chat_body(long_prompt(400), model="small", max_tokens=100))
        assert r.status_code == 200, r.text
        num_ctx = last_sent(m, "/api/chat")["options"]["num_ctx"]
        assert 256 < num_ctx <= 4096 and num_ctx % 1024 == 0
        r = client.post("/v1/chat/completions", json=chat_body(long_prompt(5000), model="small"))
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text
        assert "4096" in r.json()["error"]["message"]
        # A Messages API request has no num_ctx of its own: the raised one goes with its translation to Ollama.
        r = client.post("/v1/messages", json={"model": "small", "max_tokens": 100, "messages": [{"role": "user", "content": long_prompt(400)}]})
        assert r.status_code == 200, r.text
        assert 256 < last_sent(m, "/api/chat")["options"]["num_ctx"] <= 4096


MASTER = "master-" + "s" * 32


def test_overflow_after_the_threshold_only_for_keys_allowed_to_and_it_is_recorded(procs, tmp_path):
    """One slow local GPU at its in-flight cap and a hosted overflow: a key allowed to overflow goes hosted once it
    has waited `overflow-after`; another key waits for the local slot. The usage records and the savings report
    show which calls overflowed and what they cost."""
    local = procs.start_mock("--loaded", MODEL, "--latency-ms", "2500")
    hosted = procs.start_mock("--model", "vendor/llama-3.2-3b")
    path = tmp_path / "sluice.yaml"
    path.write_text(
        "upstreams:\n"
        f"  - {{name: gpu, url: {local.url}, kind: ollama}}\n"
        f"  - {{name: hosted, url: {hosted.url}, kind: openai, overflow: true, model_names: {{llama3.2: vendor/llama-3.2-3b}},"
        " price: {input: 100, output: 200}}\n"
    )
    database = f"sqlite:{tmp_path / 'usage.db'}"
    gw = procs.start_gateway(args=[
        "--config", str(path), "--database", database, "--master-key", MASTER, "--upstream-max-inflight", "1",
        "--overflow-after", "300ms", "--cache-ttl", "0",
    ])
    admin = {"authorization": f"Bearer {MASTER}"}

    def key(name, **terms):
        r = httpx.post(f"{gw.url}/admin/keys", json={"name": name, **terms}, headers=admin, timeout=10)
        assert r.status_code in (200, 201), r.text
        assert r.json()["allow_overflow"] is terms.get("allow_overflow", False)
        return {"authorization": f"Bearer {r.json()['key']}"}

    allowed, local_only = key("may-overflow", allow_overflow=True), key("local-only")
    from concurrent.futures import ThreadPoolExecutor

    def ask(headers):
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=chat_body(f"hi {nonce()}"), headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        return r

    with ThreadPoolExecutor(max_workers=3) as pool:
        # The local slot is taken...
        first = pool.submit(ask, local_only)
        wait_until(lambda: local.stats()["requests"].get("/api/chat", 0) == 1, "the first call to reach the GPU")
        # ...so the allowed key's call overflows after its wait, and the other key's waits for the GPU.
        overflowing = pool.submit(ask, allowed)
        waiting = pool.submit(ask, local_only)
        for f in (first, overflowing, waiting):
            f.result()
    assert hosted.stats()["requests"].get("/v1/chat/completions", 0) == 1
    # The hosted API knows the model by its own name.
    assert last_sent(hosted, "/v1/chat/completions")["model"] == "vendor/llama-3.2-3b"
    assert local.stats()["requests"].get("/api/chat", 0) == 2
    assert metric(gw, "sluice_overflow_total") == 1

    def records():
        data = httpx.get(f"{gw.url}/admin/usage/recent", params={"limit": 10}, headers=admin, timeout=10).json()["data"]
        calls = [r for r in data if r["route"] == "/v1/chat/completions"]
        return calls if len(calls) == 3 else None

    calls = wait_until(records, "the three usage records")
    overflowed = [r for r in calls if r["overflowed"]]
    assert len(overflowed) == 1 and overflowed[0]["upstream"] == "hosted" and overflowed[0]["cost_usd"] > 0
    assert all(r["upstream"] == "gpu" and r["cost_usd"] == 0 and r["saved_usd"] > 0 for r in calls if not r["overflowed"])

    report = httpx.get(f"{gw.url}/admin/usage", headers=admin, timeout=10).json()["totals"]
    assert report["overflow_requests"] == 1
    assert report["overflow_cost_usd"] == overflowed[0]["cost_usd"]
    assert report["saved_usd"] > 0
    table = procs.run_sluice("usage", "--since", "1h", "--database", database)
    assert table.returncode == 0, table.stderr
    assert "overflow" in table.stdout


def metric(gw, name: str) -> float:
    for line in httpx.get(f"{gw.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_interactive_requests_overtake_queued_batch_requests(procs, tmp_path):
    local = procs.start_mock("--loaded", MODEL, "--latency-ms", "1500")
    gw = procs.start_gateway(upstream=local.url, args=[
        "--database", f"sqlite:{tmp_path / 'usage.db'}", "--master-key", MASTER, "--upstream-max-inflight", "1", "--cache-ttl", "0",
    ])
    admin = {"authorization": f"Bearer {MASTER}"}

    def key(name, priority):
        r = httpx.post(f"{gw.url}/admin/keys", json={"name": name, "priority": priority}, headers=admin, timeout=10)
        assert r.status_code in (200, 201) and r.json()["priority"] == priority, r.text
        return {"authorization": f"Bearer {r.json()['key']}"}

    batch, interactive = key("nightly-job", "batch"), key("editor", "interactive")
    from concurrent.futures import ThreadPoolExecutor

    def ask(headers, prompt):
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=chat_body(prompt), headers=headers, timeout=30)
        assert r.status_code == 200, r.text

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(ask, batch, "batch-running")]
        wait_until(lambda: local.stats()["requests"].get("/api/chat", 0) == 1, "the first batch call to reach the upstream")
        for depth, (headers, prompt) in enumerate([(batch, "batch-1"), (batch, "batch-2"), (interactive, "interactive")], start=1):
            futures.append(pool.submit(ask, headers, prompt))
            wait_until(lambda: metric(gw, "sluice_upstream_queue_depth") == depth, f"{depth} requests to queue")
        for f in futures:
            f.result()
    sent = [e["body"]["messages"][-1]["content"] for e in httpx.get(f"{local.url}/mock/requests", timeout=10).json()
            if e["path"] == "/api/chat"]
    assert sent == ["batch-running", "interactive", "batch-1", "batch-2"]


def test_warm_up_gates_readiness(procs, tmp_path):
    slow = procs.start_mock("--load-ms", "5000")
    config = write_config(tmp_path, [("gpu", slow.url)], "models:\n  coder:\n    model: llama3.2:latest\n    warm: true\n    keep_alive: 1h\n")
    gw = procs.start_gateway(args=["--config", config, "--probe-interval", "500ms"])
    # Up and answering probes, but the warm model is still loading: not ready.
    r = httpx.get(f"{gw.url}/readyz", timeout=10)
    assert r.status_code == 503, r.text
    assert r.json()["upstreams"][0]["error"].startswith("warming")
    ready = wait_until(lambda: httpx.get(f"{gw.url}/readyz", timeout=10).status_code == 200, "the warm model to load")
    assert ready
    assert loaded_on(gw, "gpu") == [MODEL]
    warm = last_sent(slow, "/api/generate")
    assert warm["model"] == MODEL and warm["keep_alive"] == "1h"
    assert slow.stats()["loads"] == 1
    slow.reset()
    assert slow.stats()["loads"] == 0 and loaded_on(gw, "gpu") == [MODEL]


def test_with_a_hosted_overflow_beside_the_gpus_defaults_still_reach_the_gpus_and_clients_choose_reasoning(procs, tmp_path):
    """The README's worked example: a hosted overflow serving the same model must not stop the virtual model's
    Ollama settings from reaching the GPUs, nor receive them itself; a client's own reasoning setting beats the
    model's `think` default; and the gateway is ready only while a GPU is."""
    gpu = procs.start_mock("--loaded", MODEL)
    hosted = procs.start_mock("--model", "vendor/llama-3.2-3b")
    path = tmp_path / "sluice.yaml"
    path.write_text(
        "upstreams:\n"
        f"  - {{name: gpu, url: {gpu.url}, kind: ollama}}\n"
        f"  - {{name: hosted, url: {hosted.url}, kind: openai, overflow: true, model_names: {{llama3.2: vendor/llama-3.2-3b}},"
        " price: {input: 1, output: 2}}\n"
        + VIRTUAL_MODELS
    )
    gw = procs.start_gateway(args=["--config", str(path), "--probe-interval", "200ms"])
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        assert client.post("/v1/chat/completions", json=chat_body(f"hi {nonce()}", model="coder")).status_code == 200
        sent = last_sent(gpu, "/api/chat")
        assert sent["options"]["num_ctx"] == 8192 and sent["keep_alive"] == "30m" and sent["think"] is False, sent
        body = chat_body(f"think {nonce()}", model="coder", reasoning_effort="high")
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        assert last_sent(gpu, "/api/chat")["think"] == "high"
        r = client.post("/v1/messages", json={"model": "coder", "max_tokens": 20, "thinking": {"type": "disabled"},
                                              "messages": [{"role": "user", "content": f"hi {nonce()}"}]})
        assert r.status_code == 200, r.text
        assert last_sent(gpu, "/api/chat")["think"] is False
        r = client.post("/v1/responses", json={"model": "coder", "input": f"hi {nonce()}", "reasoning": {"effort": "low"}})
        assert r.status_code == 200, r.text
        assert last_sent(gpu, "/api/chat")["think"] == "low"
    assert not [e for e in httpx.get(f"{hosted.url}/mock/requests", timeout=10).json() if e["path"] == "/v1/chat/completions"]
    assert httpx.get(f"{gw.url}/readyz", timeout=10).status_code == 200
    gpu.process.signal(signal.SIGKILL)
    wait_until(lambda: httpx.get(f"{gw.url}/readyz", timeout=10).status_code == 503, "readiness to follow the GPU, not the overflow")
