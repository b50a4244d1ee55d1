"""Configuration: validation, precedence (flag > env > config file > .env > default), secrets masked."""

from __future__ import annotations

import json

import httpx
import pytest

from e2e_support import chat_body, expected_reply, free_port, nonce


def effective_config(procs, *args, env=None, cwd=None) -> dict:
    result = procs.run_sluice("check-config", *args, env=env, cwd=cwd)
    assert result.returncode == 0, f"check-config failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"check-config did not print JSON:\n{result.stdout}") from None


def test_check_config_defaults(procs, tmp_path):
    config = effective_config(procs, cwd=tmp_path)
    assert config["port"] == 8080
    assert config["host"] == "127.0.0.1"


def test_check_config_rejects_bad_port_from_env(procs, tmp_path):
    result = procs.run_sluice("check-config", env={"SLUICE_PORT": "notaport"}, cwd=tmp_path)
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "port" in (result.stdout + result.stderr).lower()


def test_check_config_rejects_unknown_file_key(procs, tmp_path):
    config_file = tmp_path / "sluice.yaml"
    config_file.write_text("prot: 9000\n")
    result = procs.run_sluice("check-config", "--config", config_file, cwd=tmp_path)
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "prot" in result.stdout + result.stderr


def test_serve_rejects_bad_port_with_exit_2(procs, tmp_path):
    result = procs.run_sluice("serve", env={"SLUICE_PORT": "notaport"}, cwd=tmp_path)
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"


# (sources present, expected port). Sources: flag 3333, env 2222, config file 4444, .env 1111.
PRECEDENCE = [
    ({"dotenv"}, 1111),
    ({"dotenv", "file"}, 4444),
    ({"dotenv", "file", "env"}, 2222),
    ({"dotenv", "env"}, 2222),
    ({"dotenv", "file", "env", "flag"}, 3333),
    ({"dotenv", "flag"}, 3333),
]


@pytest.mark.parametrize("sources,expected", PRECEDENCE, ids=["+".join(sorted(s)) for s, _ in PRECEDENCE])
def test_precedence(procs, tmp_path, sources, expected):
    args, env = [], {}
    if "dotenv" in sources:
        (tmp_path / ".env").write_text("SLUICE_PORT=1111\n")
    if "file" in sources:
        config_file = tmp_path / "sluice.yaml"
        config_file.write_text("port: 4444\n")
        args += ["--config", str(config_file)]
    if "env" in sources:
        env["SLUICE_PORT"] = "2222"
    if "flag" in sources:
        args += ["--port", "3333"]
    assert effective_config(procs, *args, env=env, cwd=tmp_path)["port"] == expected


def test_json_config_file_with_kebab_and_snake_keys(procs, tmp_path):
    config_file = tmp_path / "sluice.json"
    config_file.write_text(json.dumps({"port": 5555, "log-level": "debug", "max_body_bytes": "1KiB"}))
    config = effective_config(procs, "--config", config_file, cwd=tmp_path)
    assert config["port"] == 5555
    assert config.get("log_level", config.get("log-level")) == "debug"


def test_check_config_masks_secrets(procs, tmp_path):
    secret = "sk-master-sentinel-0123456789"
    upstream_secret = "sk-upstream-sentinel-0123456789"
    result = procs.run_sluice(
        "check-config", "--master-key", secret, env={"SLUICE_UPSTREAM_API_KEY": upstream_secret}, cwd=tmp_path
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert secret not in result.stdout + result.stderr
    assert upstream_secret not in result.stdout + result.stderr


def test_serve_takes_settings_from_dotenv_and_env(procs, mock, tmp_path):
    """No flags: the port comes from the environment, the upstream from .env in the working directory."""
    (tmp_path / ".env").write_text(f"SLUICE_UPSTREAM=http://127.0.0.1:{mock.port}\nSLUICE_PORT=1\n")
    port = free_port()
    gw = procs.start_gateway(env={"SLUICE_PORT": str(port)}, cwd=tmp_path, port=port, pass_port_flag=False)
    prompt = f"configured by env {nonce()}"
    r = httpx.post(f"{gw.v1}/chat/completions", json=chat_body(prompt), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == expected_reply(prompt)


def test_serve_takes_settings_from_config_file(procs, mock, tmp_path):
    port = free_port()
    config_file = tmp_path / "sluice.yaml"
    config_file.write_text(
        f"port: {port}\nupstream: http://127.0.0.1:{mock.port}\nupstream-kind: ollama\nmax_body_bytes: 2KiB\n"
    )
    gw = procs.start_gateway(args=["--config", str(config_file)], port=port, pass_port_flag=False)
    prompt = f"configured by file {nonce()}"
    r = httpx.post(f"{gw.v1}/chat/completions", json=chat_body(prompt), timeout=30)
    assert r.status_code == 200, r.text
    big = httpx.post(f"{gw.v1}/chat/completions", json=chat_body("z" * 4096), timeout=30)
    assert big.status_code == 413
