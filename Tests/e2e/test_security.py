"""API keys, rate limits, CORS, TLS and secure logs, driven through the real binary."""

from __future__ import annotations

import os
import ssl
import shutil
import stat
import subprocess

import httpx
import ollama
import openai
import pytest

from e2e_support import CHAT_MODEL, assert_openai_error, chat_body, nonce, wait_until

MASTER = "master-" + "m" * 32


def create_key(procs, db: str, *args: str) -> str:
    done = procs.run_sluice("keys", "create", "--database", db, *args)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert secret.startswith("sk-sluice-") and len(secret) >= len("sk-sluice-") + 32
    return secret


def key_id(procs, db: str, name: str) -> str:
    import json

    done = procs.run_sluice("keys", "list", "--json", "--database", db)
    assert done.returncode == 0, done.stderr
    return next(k["id"] for k in json.loads(done.stdout) if k["name"] == name)


@pytest.fixture()
def secured(procs, tmp_path):
    """A gateway with a master key and some keys in its SQLite store."""
    db = f"sqlite:{tmp_path / 'keys.db'}"
    keys = {
        "alice": create_key(procs, db, "--name", "alice"),
        "limited": create_key(procs, db, "--name", "limited", "--rpm", "2"),
        "scoped": create_key(procs, db, "--name", "scoped", "--models", "qwen2.5:0.5b"),
        "expired": create_key(procs, db, "--name", "expired", "--expires", "2020-01-01"),
    }
    mock = procs.start_mock()
    log = tmp_path / "gateway-logs" / "sluice.log"
    log.parent.mkdir()
    gateway = procs.start_gateway(
        upstream=mock.url, args=["--database", db, "--master-key", MASTER, "--log-file", str(log)]
    )
    return gateway, keys, db, log


def post(gateway, headers=None, body=None):
    return httpx.post(f"{gateway.v1}/chat/completions", json=body or chat_body(nonce()), headers=headers or {}, timeout=30)


def bearer(secret: str) -> dict:
    return {"authorization": f"Bearer {secret}"}


def test_list_never_shows_secrets(procs, secured):
    gateway, keys, db, _ = secured
    done = procs.run_sluice("keys", "list", "--database", db)
    assert done.returncode == 0
    assert "alice" in done.stdout
    for secret in keys.values():
        assert secret not in done.stdout


def test_missing_and_wrong_keys_are_401(secured):
    gateway, keys, _, _ = secured
    assert_openai_error(post(gateway), 401, "missing_api_key")
    assert_openai_error(post(gateway, bearer("sk-sluice-" + "A" * 43)), 401, "invalid_api_key")
    assert_openai_error(post(gateway, bearer("not-even-a-key")), 401, "invalid_api_key")
    assert_openai_error(post(gateway, bearer(keys["expired"])), 401, "invalid_api_key")


def test_bearer_and_x_api_key_both_work_with_the_official_clients(secured):
    gateway, keys, _, _ = secured
    client = openai.OpenAI(base_url=gateway.v1, api_key=keys["alice"], max_retries=0)
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": nonce()}])
    assert reply.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.v1, api_key="sk-sluice-wrong", max_retries=0).models.list()
    assert post(gateway, {"x-api-key": keys["alice"]}).status_code == 200
    native = ollama.Client(host=gateway.url, headers=bearer(keys["alice"]))
    assert native.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": nonce()}]).message.content


def test_revocation_takes_effect_within_a_second(procs, secured):
    gateway, keys, db, _ = secured
    assert post(gateway, bearer(keys["alice"])).status_code == 200
    done = procs.run_sluice("keys", "revoke", key_id(procs, db, "alice"), "--database", db)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: post(gateway, bearer(keys["alice"])).status_code == 401, "the revoked key to be refused", deadline=5)
    assert_openai_error(post(gateway, bearer(keys["alice"])), 401, "invalid_api_key")


def test_model_scope_is_403(secured):
    gateway, keys, _, _ = secured
    client = openai.OpenAI(base_url=gateway.v1, api_key=keys["scoped"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": nonce()}])
    assert "not allowed" in str(raised.value)
    ok = client.chat.completions.create(model="qwen2.5:0.5b", messages=[{"role": "user", "content": nonce()}])
    assert ok.choices[0].message.content
    assert [m.id for m in client.models.list()] == ["qwen2.5:0.5b"]


def test_per_key_rpm_gives_429_with_headers(secured):
    gateway, keys, _, _ = secured
    for remaining in ("1", "0"):
        r = post(gateway, bearer(keys["limited"]))
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit-requests"] == "2"
        assert r.headers["x-ratelimit-remaining-requests"] == remaining
        assert r.headers["x-ratelimit-reset-requests"]
    r = post(gateway, bearer(keys["limited"]))
    assert_openai_error(r, 429, "rate_limit_exceeded")
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    # Other keys are unaffected.
    assert post(gateway, bearer(keys["alice"])).status_code == 200


def test_admin_api_creates_and_lists_keys_with_the_master_key(secured):
    gateway, _, _, _ = secured
    assert httpx.get(f"{gateway.url}/admin/keys").status_code == 401
    created = httpx.post(f"{gateway.url}/admin/keys", json={"name": "from-api", "rpm": 5}, headers=bearer(MASTER))
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    listed = httpx.get(f"{gateway.url}/admin/keys", headers=bearer(MASTER)).json()["data"]
    assert any(k["name"] == "from-api" for k in listed)
    assert secret not in httpx.get(f"{gateway.url}/admin/keys", headers=bearer(MASTER)).text
    wait_until(lambda: post(gateway, bearer(secret)).status_code == 200, "the new key to be accepted", deadline=5)


def test_log_file_is_0600_and_holds_no_secrets(secured):
    gateway, keys, _, log = secured
    post(gateway, bearer(keys["alice"]))
    post(gateway, bearer("sk-sluice-" + "Z" * 43))
    post(gateway, {"x-api-key": MASTER})
    wait_until(lambda: "authentication failed" in log.read_text(), "the failed auth to be logged")
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    text = log.read_text()
    for secret in [*keys.values(), MASTER, "sk-sluice-" + "Z" * 43]:
        assert secret not in text
    failure = next(line for line in text.splitlines() if "authentication failed" in line)
    assert '"request_id"' in failure and '"client_ip":"127.0.0.1"' in failure.replace(" ", "")
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'sluice_auth_failures_total{reason="invalid"}' in metrics


def test_per_ip_limit_and_forwarded_for_spoofing(procs):
    mock = procs.start_mock()
    gateway = procs.start_gateway(upstream=mock.url, args=["--ip-rate-limit-rpm", "2"])
    for i in range(2):
        assert post(gateway, {"x-forwarded-for": f"198.51.100.{i}"}).status_code == 200
    # A new X-Forwarded-For from an untrusted peer changes nothing.
    assert_openai_error(post(gateway, {"x-forwarded-for": "198.51.100.77"}), 429, "rate_limit_exceeded")


def test_forwarded_for_is_honoured_from_trusted_proxies(procs):
    mock = procs.start_mock()
    gateway = procs.start_gateway(upstream=mock.url, args=["--ip-rate-limit-rpm", "1", "--trusted-proxies", "127.0.0.1"])
    assert post(gateway, {"x-forwarded-for": "198.51.100.1"}).status_code == 200
    assert post(gateway, {"x-forwarded-for": "198.51.100.2"}).status_code == 200
    assert post(gateway, {"x-forwarded-for": "198.51.100.1"}).status_code == 429


def test_cors_allows_only_configured_origins(procs):
    mock = procs.start_mock()
    gateway = procs.start_gateway(upstream=mock.url, args=["--cors-origins", "https://app.example"])
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type"}
    ok = httpx.options(f"{gateway.v1}/chat/completions", headers={"origin": "https://app.example", **preflight})
    assert ok.headers.get("access-control-allow-origin") == "https://app.example"
    assert "POST" in ok.headers.get("access-control-allow-methods", "")
    denied = httpx.options(f"{gateway.v1}/chat/completions", headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in denied.headers
    r = httpx.get(f"{gateway.v1}/models", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_https_round_trip(procs, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    mock = procs.start_mock()
    from e2e_support import free_port

    port = free_port()
    proc = procs._new(
        "sluice-tls",
        [str(__import__("e2e_support").sluice_bin()), "serve", "--port", port, "--upstream", mock.url,
         "--tls-cert", cert, "--tls-key", key],
        None, None,
    ).start()
    url = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(cert))
    wait_until(lambda: httpx.get(f"{url}/healthz", verify=trust).status_code == 200, "the HTTPS listener",
               on_timeout=proc.logs)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                           http_client=httpx.Client(verify=trust))
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": nonce()}])
    assert reply.choices[0].message.content
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_insecure_bind_is_refused(procs):
    done = procs.run_sluice("serve", "--host", "0.0.0.0", "--port", "0", "--auth", "off")
    assert done.returncode == 2
    assert "allow-insecure" in done.stderr
