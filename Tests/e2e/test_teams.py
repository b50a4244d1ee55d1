"""Teams: keys that share a budget, limits and models (`sluice teams create`, `keys create --team`), on both stores."""

from __future__ import annotations

import json

import httpx

from e2e_support import chat_body, nonce, wait_until

MASTER = "master-" + "e" * 32


def test_a_teams_budget_and_models_apply_to_all_its_keys(procs, database):
    mock = procs.start_mock("--model", "gpt-4o-mini", "--model", "gpt-4o")
    args = ["--database", database, "--master-key", MASTER, "--upstream-kind", "openai", "--cache-ttl", "0"]
    gateway = procs.start_gateway(upstream=mock.url, args=args)
    team = f"t-{nonce()[:8]}"
    # Room for one call's worst case (its body and max_tokens priced), not for two.
    done = procs.run_sluice("teams", "create", team, "--budget", "0.00002", "--budget-period", "monthly",
                            "--rpm", "100", "--models", "gpt-4o-mini", "--database", database)
    assert done.returncode == 0, done.stderr
    secrets = []
    for _ in range(2):
        done = procs.run_sluice("keys", "create", "--name", f"k-{nonce()[:6]}", "--team", team, "--database", database)
        assert done.returncode == 0, done.stderr
        secrets.append(done.stdout.strip())
    unknown = procs.run_sluice("keys", "create", "--name", "x", "--team", "no-such-team", "--database", database)
    assert unknown.returncode != 0 and "no-such-team" in unknown.stderr

    def ask(secret: str, model: str = "gpt-4o-mini") -> httpx.Response:
        return httpx.post(f"{gateway.v1}/chat/completions", json=chat_body(nonce(), model=model, max_tokens=20),
                          headers={"authorization": f"Bearer {secret}"}, timeout=30)

    # The team allows only gpt-4o-mini, though the keys themselves allow every model.
    assert ask(secrets[0], model="gpt-4o").status_code == 403
    # One priced answer through the first key leaves the team less than a call's worst case: the second key is
    # refused too.
    assert ask(secrets[0]).status_code == 200
    refused = wait_until(lambda: (r := ask(secrets[1])).status_code == 403 and r, "the team's spend to count")
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert "team" in refused.json()["error"]["message"]

    # The CLI, the admin API and the usage report by team all know the team and what it spent.
    def listed():
        done = procs.run_sluice("teams", "list", "--json", "--database", database)
        assert done.returncode == 0, done.stderr
        row = next(t for t in json.loads(done.stdout) if t["name"] == team)
        return row["spent_usd"] > 0 and row
    row = wait_until(listed, "the team's spend in the store")
    assert (row["keys"], row["budget_period"], row["models"], row["rpm"]) == (2, "monthly", ["gpt-4o-mini"], 100)
    admin = httpx.get(f"{gateway.url}/admin/teams", headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
    assert admin.status_code == 200
    assert any(t["name"] == team and t["id"] == row["id"] for t in admin.json()["data"])
    keys = json.loads(procs.run_sluice("keys", "list", "--json", "--database", database).stdout)
    assert sum(k.get("team_id") == row["id"] for k in keys) == 2
    table = procs.run_sluice("keys", "list", "--database", database).stdout
    assert "period" in table.splitlines()[0] and team in table

    report = procs.run_sluice("usage", "--by", "team", "--since", "1h", "--json", "--database", database)
    assert report.returncode == 0, report.stderr
    groups = {g.get("name"): g for g in json.loads(report.stdout)["groups"]}
    assert groups[team]["requests"] >= 2  # the refused model and the answer; refusals are its usage too

    # The admin API creates teams with the same rules, and refuses a name twice.
    created = httpx.post(f"{gateway.url}/admin/teams", json={"name": f"api-{nonce()[:6]}", "tpm": 1000},
                         headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
    assert created.status_code == 201, created.text
    again = httpx.post(f"{gateway.url}/admin/teams", json={"name": created.json()["name"]},
                       headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
    assert again.status_code == 409
    bad = httpx.post(f"{gateway.url}/admin/teams", json={"name": "x", "budget_alert": "150%"},
                     headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "budget_alert"
