"""The web dashboard in a real browser: headless Chromium driven over the DevTools protocol.

Chromium signs in through the login form (so the real cookie flow runs), waits for the tiles to show
the traffic made here, creates a key through the keys page, and saves screenshots under the test's
tmp dir. Skipped when no Chromium is installed, unless SLUICE_REQUIRE_CHROMIUM=1 (CI) makes that a
failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from e2e_support import CHAT_MODEL, STARTUP_DEADLINE, chat_body, nonce, wait_until

MASTER = "master-" + "d" * 32
VIEWPORT = (1440, 1000)


def chromium_binary() -> str | None:
    """$SLUICE_CHROMIUM, else the first Chromium-like browser on PATH."""
    explicit = os.environ.get("SLUICE_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket (commands in order, events dropped)."""

    def __init__(self, websocket_url: str) -> None:
        import websocket  # websocket-client

        # No Origin header: Chromium refuses DevTools websockets from origins not in --remote-allow-origins.
        self.ws = websocket.create_connection(websocket_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"DevTools {method} failed: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page, not just the viewport."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=max(height, VIEWPORT[1]),
                  deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        self.call("Emulation.clearDeviceMetricsOverride")
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.ws.close()


@pytest.fixture()
def browser(tmp_path):
    """A headless Chromium with DevTools on a free port, and a client for its first page."""
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("SLUICE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("SLUICE_REQUIRE_CHROMIUM=1 but no chromium binary was found (apt-get install chromium)")
        pytest.skip("no chromium binary found")
    pytest.importorskip("websocket", reason="websocket-client is not installed")
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    log = tmp_path / "chromium.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--no-proxy-server", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )
    client = None
    try:
        active = profile / "DevToolsActivePort"

        def port():
            if proc.poll() is not None:
                raise AssertionError(f"chromium exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            lines = active.read_text().splitlines() if active.exists() else []
            return int(lines[0]) if lines and lines[0].strip() else None

        devtools_port = wait_until(port, "Chromium's DevTools port", deadline=STARTUP_DEADLINE)

        def page_target():
            targets = httpx.get(f"http://127.0.0.1:{devtools_port}/json/list", timeout=5).json()
            return next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"), None)

        client = DevTools(wait_until(page_target, "a Chromium page target"))
        # Installed before any page script runs, and exempt from the page's CSP: collects what would
        # otherwise only show in the console.
        client.call("Page.enable")
        client.call("Page.addScriptToEvaluateOnNewDocument", source="""
            window.__problems = [];
            document.addEventListener('securitypolicyviolation', (e) =>
                window.__problems.push('CSP blocked ' + e.blockedURI + ' (' + e.violatedDirective + ')'));
            window.addEventListener('error', (e) => window.__problems.push('error: ' + e.message));
            window.addEventListener('unhandledrejection', (e) => window.__problems.push('rejection: ' + e.reason));
        """)
        yield client
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_dashboard_renders_in_chromium(procs, tmp_path, browser):
    mock = procs.start_mock()
    db = f"sqlite:{tmp_path / 'dashboard.db'}"
    gateway = procs.start_gateway(upstream=mock.url, args=["--database", db, "--master-key", MASTER])
    admin = {"authorization": f"Bearer {MASTER}"}

    # Traffic for the tiles and tables: two keys, a repeated prompt (a cache hit) and a refused request.
    keys = {}
    for name in ("web-app", "batch-jobs"):
        body = {"name": name, "budget_usd": 25} if name == "batch-jobs" else {"name": name}
        r = httpx.post(f"{gateway.url}/admin/keys", json=body, headers=admin, timeout=10)
        assert r.status_code == 201, r.text
        keys[name] = r.json()["key"]
    # A key created through the API is usable once the key directory has synced (well under a second).
    for secret in keys.values():
        wait_until(lambda: httpx.get(f"{gateway.v1}/models", headers={"authorization": f"Bearer {secret}"},
                                     timeout=5).status_code == 200, "the new keys to be accepted")
    repeated = chat_body("the same question " + nonce())
    for i in range(6):
        secret = keys["web-app" if i % 2 == 0 else "batch-jobs"]
        body = repeated if i < 2 else chat_body(nonce(), model="qwen2.5:0.5b" if i % 3 == 0 else CHAT_MODEL)
        r = httpx.post(f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}, timeout=30)
        assert r.status_code == 200, r.text
    r = httpx.post(f"{gateway.v1}/chat/completions", json={"model": CHAT_MODEL}, headers={"authorization": f"Bearer {keys['web-app']}"},
                   timeout=30)
    assert r.status_code == 400
    wait_until(lambda: httpx.get(f"{gateway.url}/admin/usage", headers=admin, timeout=5).json()["totals"]["requests"] >= 7,
               "the usage records to be written")

    # Sign in through the form, as a person would.
    browser.call("Page.navigate", url=f"{gateway.url}/dashboard")
    wait_until(lambda: browser.evaluate("document.readyState === 'complete' && !!document.querySelector('#key')"),
               "the login form")
    login = browser.screenshot(tmp_path / "dashboard-login.png")
    browser.evaluate(f"document.querySelector('#key').value = {json.dumps(MASTER)}; document.querySelector('form').submit(); true")

    def tiles_ready():
        return browser.evaluate("""(() => {
            const tiles = document.querySelectorAll('.kpi[data-kpi]');
            const requests = document.querySelector('.kpi[data-kpi="requests"]');
            const rows = document.querySelectorAll('#recent tbody tr td:not(.empty)');
            return tiles.length >= 7 && requests && Number(requests.dataset.value) >= 7 && rows.length > 0;
        })()""")

    wait_until(tiles_ready, "the dashboard to show the traffic")
    page = browser.evaluate("""(() => ({
        tiles: Array.from(document.querySelectorAll('.kpi[data-kpi]')).map((t) => t.dataset.kpi),
        requests: document.querySelector('.kpi[data-kpi="requests"] .kpi-value').textContent,
        bars: document.querySelectorAll('#chart-requests rect.bar').length,
        costBars: document.querySelectorAll('#chart-cost rect.bar').length,
        topModels: Array.from(document.querySelectorAll('#top-models tbody td:first-child')).map((td) => td.textContent),
        topKeys: Array.from(document.querySelectorAll('#top-keys tbody td:first-child')).map((td) => td.textContent),
        recentRows: document.querySelectorAll('#recent tbody tr').length,
        cacheHits: document.querySelectorAll('#recent .badge.hit').length,
        banner: document.querySelector('#banner').hidden ? '' : document.querySelector('#banner').textContent,
        cookieVisible: document.cookie.includes('sluice_session'),
    }))()""")
    assert page["tiles"] == ["requests", "tokens", "cost", "savings", "cache_hit_rate", "error_rate", "p95_latency"]
    assert int(page["requests"].replace(",", "")) >= 7
    assert page["bars"] >= 1 and page["costBars"] >= 1
    assert any(m.startswith("llama3.2") for m in page["topModels"]), page
    assert {"web-app", "batch-jobs"} <= set(page["topKeys"]), page
    assert page["recentRows"] >= 7 and page["cacheHits"] >= 1, page
    assert page["banner"] == ""
    assert not page["cookieVisible"], "the session cookie must be HttpOnly"

    # The filters narrow the table without another request.
    shown = browser.evaluate("""(() => {
        document.querySelector('#filter-status').value = '4';
        document.querySelector('#filter-status').dispatchEvent(new Event('input'));
        return Array.from(document.querySelectorAll('#recent tbody .badge')).map((b) => b.textContent);
    })()""")
    # The 400 made above, and any 401 from polling for the new keys.
    assert "400" in shown and all(status.startswith("4") for status in shown), shown
    browser.evaluate("document.querySelector('#filter-status').value = ''; "
                     "document.querySelector('#filter-status').dispatchEvent(new Event('input')); true")
    overview = browser.screenshot(tmp_path / "dashboard-overview.png")

    # The keys page: create a key through the form (a cookie-authenticated POST) and see its secret once.
    browser.evaluate("location.hash = '#keys'; true")
    wait_until(lambda: browser.evaluate("document.querySelectorAll('#keys-table tbody tr td:not(.empty)').length > 0"),
               "the keys table")
    browser.evaluate("""(() => {
        const form = document.querySelector('#create-key');
        form.elements.name.value = 'from-the-browser';
        form.elements.rpm.value = '30';
        form.requestSubmit();
        return true;
    })()""")
    secret = wait_until(lambda: browser.evaluate(
        "document.querySelector('#new-secret').hidden ? null : document.querySelector('#new-secret-value').textContent"),
        "the new key's secret")
    assert secret.startswith("sk-sluice-")
    names = wait_until(lambda: (lambda n: n if "from-the-browser" in n else None)(browser.evaluate(
        "Array.from(document.querySelectorAll('#keys-table tbody td:first-child')).map((td) => td.textContent)")),
        "the new key in the table")
    assert {"web-app", "batch-jobs", "from-the-browser"} <= set(names)
    # A budgeted key shows what it spent against its budget (local models cost nothing).
    limits = browser.evaluate("""Array.from(document.querySelectorAll('#keys-table tbody tr'))
        .filter((tr) => tr.cells[0].textContent === 'batch-jobs').map((tr) => tr.cells[5].textContent)""")
    assert limits == ["$0.00 of $25.00 budget"], limits
    listed = httpx.get(f"{gateway.url}/admin/keys", headers=admin, timeout=10).json()["data"]
    assert any(k["name"] == "from-the-browser" and k["rpm"] == 30 for k in listed)
    keys_page = browser.screenshot(tmp_path / "dashboard-keys.png")

    problems = browser.evaluate("window.__problems")
    assert problems == [], problems
    for shot in (login, overview, keys_page):
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")

    # Signing out ends the session for the admin API too.
    browser.evaluate("document.querySelector('form[action=\"/dashboard/logout\"]').submit(); true")
    wait_until(lambda: browser.evaluate("!!document.querySelector('#key')"), "the login page after signing out")
    status = browser.evaluate("fetch('/admin/usage', {credentials: 'same-origin'}).then((r) => r.status)")
    assert status == 401
