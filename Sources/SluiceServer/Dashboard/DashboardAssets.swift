/// The dashboard's pages, stylesheet and script, compiled into the binary so it needs no files, CDN or build step.
///
/// The pages carry no inline script or style: the Content-Security-Policy set by ``SecurityHeaders``
/// allows only `/dashboard/app.css` and `/dashboard/app.js` from this origin. The script inserts data with
/// `textContent` and SVG attributes only, never as markup.
enum DashboardAssets {
    /// What the login page tells the user above the form.
    enum LoginMessage {
        case wrongKey
        case noMasterKey

        var text: String {
            switch self {
            case .wrongKey: "That is not the master key."
            case .noMasterKey: "The dashboard needs a master key: start the gateway with --master-key or SLUICE_MASTER_KEY."
            }
        }
    }

    static let head = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <link rel="icon" href="data:,">
        <link rel="stylesheet" href="/dashboard/app.css">
        """#

    static let brandMark = #"""
        <svg class="brand-mark" viewBox="0 0 24 24" aria-hidden="true"><rect x="2" y="2" width="20" height="20" rx="5"/><path d="M6 9h12M6 13h9M6 17h5"/></svg>
        """#

    /// The sign-in form; `message` is one of a few fixed texts, never anything from the request.
    static func loginPage(message: LoginMessage?) -> String {
        let notice = message.map { #"<p class="error" role="alert">"# + $0.text + "</p>" } ?? ""
        return head + #"""
            <title>Sign in · Sluice</title>
            </head>
            <body class="login">
            <main class="login-card">
            <div class="brand brand-dark">
            """# + brandMark + #"""
            <span>Sluice</span></div>
            <h1>Sign in to the dashboard</h1>
            <p class="muted">Enter the gateway's master key. The session lasts 12 hours.</p>
            """# + notice + #"""
            <form method="post" action="/dashboard/login">
            <label class="field" for="key">Master key</label>
            <input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
            <button class="button primary" type="submit">Sign in</button>
            </form>
            </main>
            </body>
            </html>
            """#
    }

    static let appPage = head + #"""
        <title>Dashboard · Sluice</title>
        <script src="/dashboard/app.js" defer></script>
        </head>
        <body>
        <header class="topbar">
        <div class="brand">
        """# + brandMark + #"""
        <span>Sluice</span></div>
        <nav class="tabs">
        <a href="#overview" data-tab="overview" class="active">Overview</a>
        <a href="#keys" data-tab="keys">API keys</a>
        </nav>
        <div class="spacer"></div>
        <form method="post" action="/dashboard/logout"><button class="signout" type="submit">Sign out</button></form>
        </header>
        <main>
        <p id="banner" class="banner" role="alert" hidden></p>

        <section id="overview" data-page="overview">
        <div class="toolbar">
        <h1>Overview</h1>
        <span id="updated" class="muted small"></span>
        <div class="segmented" role="group" aria-label="Time window">
        <button type="button" data-window="24h" class="active">24 hours</button>
        <button type="button" data-window="7d">7 days</button>
        <button type="button" data-window="30d">30 days</button>
        </div>
        <button type="button" id="refresh" class="button">Refresh</button>
        </div>

        <div class="kpis">
        <div class="kpi" data-kpi="requests"><span class="kpi-label">Requests</span><span class="kpi-value">–</span><span class="kpi-sub"></span></div>
        <div class="kpi" data-kpi="tokens"><span class="kpi-label">Tokens</span><span class="kpi-value">–</span><span class="kpi-sub"></span></div>
        <div class="kpi" data-kpi="cost"><span class="kpi-label">Cost</span><span class="kpi-value">–</span><span class="kpi-sub"></span></div>
        <div class="kpi" data-kpi="savings"><span class="kpi-label">Savings</span><span class="kpi-value">–</span><span class="kpi-sub"></span></div>
        <div class="kpi" data-kpi="cache_hit_rate"><span class="kpi-label">Cache hit rate</span><span class="kpi-value">–</span><span class="kpi-sub"></span></div>
        <div class="kpi" data-kpi="error_rate"><span class="kpi-label">Error rate</span><span class="kpi-value">–</span><span class="kpi-sub"></span></div>
        <div class="kpi" data-kpi="p95_latency"><span class="kpi-label">p95 latency</span><span class="kpi-value">–</span><span class="kpi-sub"></span></div>
        </div>

        <div class="grid-2">
        <div class="card"><h2>Requests per day <span class="muted small">(UTC)</span></h2><svg id="chart-requests" class="chart" viewBox="0 0 640 240" role="img" aria-label="Requests per day"></svg></div>
        <div class="card"><h2>Cost per day <span class="muted small">(UTC, USD)</span></h2><svg id="chart-cost" class="chart" viewBox="0 0 640 240" role="img" aria-label="Cost per day"></svg></div>
        </div>

        <div class="grid-2">
        <div class="card"><h2>Top models</h2><div class="table-wrap"><table id="top-models">
        <thead><tr><th>Model</th><th class="num">Requests</th><th class="num">Tokens</th><th class="num">Cost</th><th class="num">Errors</th><th class="num">p95</th></tr></thead>
        <tbody></tbody></table></div></div>
        <div class="card"><h2>Top keys</h2><div class="table-wrap"><table id="top-keys">
        <thead><tr><th>Key</th><th class="num">Requests</th><th class="num">Tokens</th><th class="num">Cost</th><th class="num">Errors</th><th class="num">p95</th></tr></thead>
        <tbody></tbody></table></div></div>
        </div>

        <div class="card"><h2>Upstreams <span class="muted small">(models loaded, from each server's /api/ps)</span></h2><div class="table-wrap"><table id="upstreams">
        <thead><tr><th>Upstream</th><th>Kind</th><th>Breaker</th><th>Ready</th><th>Loaded models</th></tr></thead>
        <tbody></tbody></table></div></div>

        <div class="card">
        <div class="card-head">
        <h2>Recent requests <span id="recent-count" class="muted small"></span></h2>
        <div class="filters">
        <input id="filter-model" type="search" placeholder="Filter by model" list="model-names" aria-label="Filter by model">
        <datalist id="model-names"></datalist>
        <select id="filter-status" aria-label="Filter by status">
        <option value="">All statuses</option>
        <option value="2">2xx success</option>
        <option value="4">4xx client error</option>
        <option value="5">5xx server error</option>
        </select>
        <label class="check"><input id="filter-cache" type="checkbox"> Cache hits only</label>
        </div>
        </div>
        <div class="table-wrap"><table id="recent">
        <thead><tr><th>Time</th><th>Model</th><th>Route</th><th>Key</th><th class="num">Status</th><th class="num">Latency</th><th class="num">Tokens</th><th class="num">Cost</th><th>Cache</th></tr></thead>
        <tbody></tbody></table></div>
        </div>
        </section>

        <section id="keys" data-page="keys" hidden>
        <div class="toolbar"><h1>API keys</h1></div>
        <div class="card">
        <h2>Create a key</h2>
        <form id="create-key" class="form-row">
        <label class="field">Name<input name="name" required maxlength="100" placeholder="e.g. ci-runner"></label>
        <label class="field">Requests per minute<input name="rpm" type="number" min="1" step="1" placeholder="unlimited"></label>
        <label class="field grow">Models<input name="models" placeholder="comma-separated; empty allows all"></label>
        <button class="button primary" type="submit">Create key</button>
        </form>
        <div id="new-secret" class="secret" hidden>
        <strong>Copy the new key now: it is shown only once.</strong>
        <code id="new-secret-value" class="mono"></code>
        <button type="button" id="copy-secret" class="button">Copy</button>
        <button type="button" id="hide-secret" class="button">Done</button>
        </div>
        </div>
        <div class="card">
        <div class="table-wrap"><table id="keys-table">
        <thead><tr><th>Name</th><th>Key</th><th>ID</th><th>Created</th><th>Last used</th><th>Limits</th><th>Models</th><th>Status</th><th></th></tr></thead>
        <tbody></tbody></table></div>
        </div>
        <div class="card"><h2>Teams</h2>
        <div class="table-wrap"><table id="teams-table">
        <thead><tr><th>Name</th><th>ID</th><th>Keys</th><th>Limits</th><th>Models</th></tr></thead>
        <tbody></tbody></table></div>
        </div>
        </section>
        </main>
        </body>
        </html>
        """#

    static let css = #"""
        :root {
          --bg: #f4f5f7; --card: #fff; --line: #e3e6ea; --text: #1d2530; --muted: #69737e;
          --accent: #2563eb; --accent-soft: #e1eafd; --teal: #0d9488;
          --bad: #c2410c; --bad-soft: #fdece3; --ok: #15803d; --ok-soft: #e2f3e7; --warn: #a16207; --warn-soft: #fbf1d6;
          font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
          color-scheme: light;
        }
        * { box-sizing: border-box; }
        [hidden] { display: none !important; }
        body { margin: 0; background: var(--bg); color: var(--text); font-size: 14px; line-height: 1.45; }
        h1 { font-size: 20px; font-weight: 650; margin: 0; }
        .muted { color: var(--muted); }
        .small { font-size: 12px; font-weight: 400; }
        .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }

        .topbar { display: flex; align-items: center; gap: 28px; height: 56px; padding: 0 24px; background: #111827; color: #f9fafb; }
        .brand { display: flex; align-items: center; gap: 9px; font-weight: 650; font-size: 16px; }
        .brand-mark { width: 24px; height: 24px; }
        .brand-mark rect { fill: var(--accent); }
        .brand-mark path { stroke: #fff; stroke-width: 2; stroke-linecap: round; fill: none; }
        .tabs { display: flex; gap: 20px; height: 100%; }
        .tabs a { display: flex; align-items: center; color: #aeb6c2; text-decoration: none; border-bottom: 2px solid transparent; padding-top: 2px; }
        .tabs a:hover { color: #fff; }
        .tabs a.active { color: #fff; border-bottom-color: #60a5fa; }
        .spacer { flex: 1; }
        .signout { font: inherit; background: transparent; color: #cfd5dd; border: 1px solid #374151; border-radius: 6px; padding: 5px 12px; cursor: pointer; }
        .signout:hover { color: #fff; border-color: #6b7280; }

        main { max-width: 1320px; margin: 0 auto; padding: 24px; }
        .toolbar { display: flex; align-items: center; gap: 12px; margin-bottom: 16px; flex-wrap: wrap; }
        .toolbar h1 { flex: 1; }
        .banner { margin: 0 0 16px; padding: 10px 14px; border-radius: 8px; background: var(--bad-soft); color: var(--bad); border: 1px solid #f5c6ae; }

        .segmented { display: inline-flex; border: 1px solid #cfd5db; border-radius: 7px; overflow: hidden; background: var(--card); }
        .segmented button { font: inherit; border: 0; background: transparent; color: var(--muted); padding: 6px 14px; cursor: pointer; }
        .segmented button + button { border-left: 1px solid #cfd5db; }
        .segmented button.active { background: var(--accent); color: #fff; }
        .button { font: inherit; border: 1px solid #cfd5db; background: var(--card); color: var(--text); border-radius: 7px; padding: 6px 14px; cursor: pointer; }
        .button:hover { border-color: #9aa5b1; }
        .button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
        .button.primary:hover { background: #1d4fd8; }
        .button.danger { color: var(--bad); border-color: #efb9a0; padding: 3px 10px; }
        .button:disabled { opacity: .5; cursor: default; }

        .kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px; margin-bottom: 16px; }
        .kpi { display: flex; flex-direction: column; gap: 2px; background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
        .kpi-label { color: var(--muted); font-size: 11.5px; font-weight: 600; text-transform: uppercase; letter-spacing: .05em; }
        .kpi-value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
        .kpi-sub { color: var(--muted); font-size: 12px; min-height: 1.45em; }
        .kpi.bad .kpi-value { color: var(--bad); }

        .grid-2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; margin-bottom: 16px; }
        .grid-2 > .card { margin-bottom: 0; }
        @media (max-width: 960px) { .grid-2 { grid-template-columns: minmax(0, 1fr); } }
        .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; margin-bottom: 16px; min-width: 0; }
        .card h2 { font-size: 14px; font-weight: 600; margin: 0 0 12px; }
        .card-head { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; margin-bottom: 10px; }
        .card-head h2 { flex: 1; margin: 0; }

        .chart { display: block; width: 100%; height: auto; }
        .chart .grid { stroke: #edf0f3; }
        .chart .axis { stroke: #c9d0d7; }
        .chart .tick { fill: var(--muted); font-size: 11px; }
        .chart .bar.requests { fill: var(--accent); }
        .chart .bar.cost { fill: var(--teal); }
        .chart .bar:hover { opacity: .75; }
        .chart .empty { fill: var(--muted); font-size: 13px; }

        .table-wrap { overflow-x: auto; }
        table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
        th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
        th { color: var(--muted); font-size: 11.5px; font-weight: 600; text-transform: uppercase; letter-spacing: .05em; }
        th.num, td.num { text-align: right; }
        tbody tr:last-child td { border-bottom: 0; }
        tbody tr:hover td { background: #f8f9fb; }
        td.empty { color: var(--muted); text-align: center; padding: 22px; }
        td.ellipsis { max-width: 260px; overflow: hidden; text-overflow: ellipsis; }
        .badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; }
        .badge.ok { background: var(--ok-soft); color: var(--ok); }
        .badge.warn { background: var(--warn-soft); color: var(--warn); }
        .badge.err { background: var(--bad-soft); color: var(--bad); }
        .badge.hit { background: var(--accent-soft); color: var(--accent); }
        .badge.off { background: #eceff2; color: var(--muted); }

        .filters { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
        input, select { font: inherit; color: var(--text); background: #fff; border: 1px solid #cfd5db; border-radius: 7px; padding: 6px 10px; }
        input:focus, select:focus { outline: none; border-color: var(--accent); box-shadow: 0 0 0 3px var(--accent-soft); }
        .check { display: inline-flex; align-items: center; gap: 6px; color: var(--muted); }
        .check input { margin: 0; }
        .form-row { display: flex; align-items: flex-end; gap: 12px; flex-wrap: wrap; }
        .field { display: flex; flex-direction: column; gap: 4px; color: var(--muted); font-size: 12px; font-weight: 600; }
        .field input { font-weight: 400; }
        .field.grow { flex: 1; min-width: 220px; }
        .secret { margin-top: 14px; padding: 12px 14px; background: #f0f5ff; border: 1px solid #bcd0fa; border-radius: 8px; }
        .secret code { display: block; margin: 8px 0 10px; word-break: break-all; font-size: 13.5px; }

        body.login { display: flex; align-items: center; justify-content: center; min-height: 100vh; }
        .login-card { width: 380px; margin: 0; padding: 28px; background: var(--card); border: 1px solid var(--line); border-radius: 12px; box-shadow: 0 10px 30px rgba(15, 23, 42, .07); }
        .login-card h1 { margin: 18px 0 4px; }
        .login-card p { margin: 0 0 16px; }
        .login-card input { width: 100%; margin: 4px 0 14px; }
        .login-card .button { width: 100%; padding: 8px 14px; }
        .brand-dark { color: var(--text); }
        .error { padding: 8px 12px; border-radius: 7px; background: var(--bad-soft); color: var(--bad); }
        """#

    static let javascript = #"""
        'use strict';
        // The Sluice dashboard: reads the /admin JSON API with the session cookie and draws it.
        // Data only ever reaches the page through textContent and SVG attributes, never as markup.
        (() => {
          const SVG_NS = 'http://www.w3.org/2000/svg';
          const REFRESH_MS = 30000;
          const state = { window: '24h', keyNames: new Map(), teamNames: new Map(), recent: [], timer: null, loading: false };
          const $ = (selector, root = document) => root.querySelector(selector);
          const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

          function el(tag, attrs, ...children) {
            const node = document.createElement(tag);
            for (const [name, value] of Object.entries(attrs || {})) {
              if (value === undefined || value === null || value === false) continue;
              if (name === 'class') node.className = value;
              else node.setAttribute(name, value === true ? '' : String(value));
            }
            for (const child of children) {
              if (child === undefined || child === null) continue;
              node.append(child instanceof Node ? child : String(child));
            }
            return node;
          }

          function svg(tag, attrs, text) {
            const node = document.createElementNS(SVG_NS, tag);
            for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
            if (text !== undefined) node.textContent = text;
            return node;
          }

          class APIError extends Error {
            constructor(status, message) { super(message); this.status = status; }
          }

          // Every call sends X-Sluice-CSRF: the gateway refuses cookie-authenticated changes without it.
          async function api(path, options = {}) {
            const headers = { 'Accept': 'application/json', 'X-Sluice-CSRF': '1' };
            const init = { method: options.method || 'GET', credentials: 'same-origin', headers, cache: 'no-store' };
            if (options.body !== undefined) {
              headers['Content-Type'] = 'application/json';
              init.body = JSON.stringify(options.body);
            }
            const response = await fetch(path, init);
            if (response.status === 401) {
              // The session ended (expiry, sign-out elsewhere, restart): back to the sign-in form.
              window.location.assign('/dashboard');
              throw new APIError(401, 'Your session has ended; sign in again.');
            }
            if (response.status === 204) return null;
            let body = null;
            try { body = await response.json(); } catch (_) { body = null; }
            if (!response.ok) {
              const message = body && body.error && body.error.message ? body.error.message : `HTTP ${response.status}`;
              throw new APIError(response.status, message);
            }
            return body;
          }

          const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
          const fmtInt = (n) => integer.format(n || 0);
          function fmtCompact(n) {
            n = n || 0;
            if (n >= 1e9) return (n / 1e9).toFixed(1) + 'B';
            if (n >= 1e6) return (n / 1e6).toFixed(1) + 'M';
            if (n >= 1e4) return (n / 1e3).toFixed(1) + 'k';
            return fmtInt(n);
          }
          function fmtUSD(n) {
            n = n || 0;
            if (n === 0) return '$0.00';
            if (Math.abs(n) < 0.0001) return n > 0 ? '<$0.0001' : '>-$0.0001';
            if (Math.abs(n) < 0.01) return '$' + n.toFixed(4);
            if (Math.abs(n) < 1000) return '$' + n.toFixed(2);
            return '$' + integer.format(n);
          }
          const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`;
          const fmtPct = (rate) => ((rate || 0) * 100).toFixed(1) + '%';
          function fmtMs(ms) {
            ms = ms || 0;
            if (ms >= 10000) return (ms / 1000).toFixed(1) + ' s';
            if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
            if (ms >= 10) return Math.round(ms) + ' ms';
            return ms.toFixed(1) + ' ms';
          }
          function fmtTime(seconds) {
            if (!seconds) return '—';
            const date = new Date(seconds * 1000);
            const time = date.toLocaleTimeString('en-GB', { hour12: false });
            if (date.toDateString() === new Date().toDateString()) return time;
            return date.toLocaleDateString('en-CA') + ' ' + time.slice(0, 5);
          }
          const keyLabel = (id) => id ? (state.keyNames.get(id) || id) : 'no key';
          const tokensOf = (row) => (row.prompt_tokens || 0) + (row.completion_tokens || 0);

          function showBanner(message) {
            const banner = $('#banner');
            banner.textContent = message || '';
            banner.hidden = !message;
          }

          // KPI tiles: data-value holds the raw number for scripts and tests.
          function setKPI(name, value, text, sub, bad) {
            const tile = $(`.kpi[data-kpi="${name}"]`);
            tile.dataset.value = String(value || 0);
            $('.kpi-value', tile).textContent = text;
            $('.kpi-sub', tile).textContent = sub || '';
            tile.classList.toggle('bad', Boolean(bad));
          }

          function renderKPIs(t) {
            const tokens = tokensOf(t);
            setKPI('requests', t.requests, fmtInt(t.requests), `${plural(t.errors, 'error')} · ${fmtInt(t.cache_hits)} cached`);
            setKPI('tokens', tokens, fmtCompact(tokens), `${fmtCompact(t.prompt_tokens)} in · ${fmtCompact(t.completion_tokens)} out`);
            setKPI('cost', t.cost_usd, fmtUSD(t.cost_usd), t.requests ? `${fmtUSD(t.cost_usd / t.requests)} per request` : '');
            setKPI('savings', t.saved_usd, fmtUSD(t.saved_usd), 'cache + local models');
            setKPI('cache_hit_rate', t.cache_hit_rate, fmtPct(t.cache_hit_rate), plural(t.cache_hits, 'hit'));
            setKPI('error_rate', t.error_rate, fmtPct(t.error_rate), plural(t.errors, 'error'), t.error_rate > 0.05);
            setKPI('p95_latency', t.p95_latency_ms, fmtMs(t.p95_latency_ms), `p50 ${fmtMs(t.p50_latency_ms)}`);
          }

          // Every UTC day of the window, so days without traffic show as gaps rather than vanish.
          function daysOf(since, until) {
            const days = [];
            const start = new Date(since * 1000);
            let day = Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate());
            const end = (until || Date.now() / 1000) * 1000;
            while (day <= end && days.length < 400) {
              days.push(new Date(day).toISOString().slice(0, 10));
              day += 86400000;
            }
            return days;
          }

          function niceStep(x) {
            const magnitude = Math.pow(10, Math.floor(Math.log10(x)));
            const f = x / magnitude;
            return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * magnitude;
          }

          function drawBars(chart, points, format, series, integerAxis, emptyText) {
            const W = 640, H = 240, left = 60, right = 12, top = 14, bottom = 30;
            const plotW = W - left - right, plotH = H - top - bottom;
            chart.replaceChildren();
            const peak = Math.max(0, ...points.map((p) => p.value));
            let step = niceStep((peak > 0 ? peak : (integerAxis ? 4 : 1)) / 4);
            if (integerAxis) step = Math.max(1, Math.ceil(step));
            const max = step * Math.max(1, Math.ceil(peak / step));
            for (let v = 0; v <= max + step / 2; v += step) {
              const y = top + plotH - (plotH * v) / max;
              chart.append(svg('line', { x1: left, x2: W - right, y1: y, y2: y, class: v === 0 ? 'axis' : 'grid' }));
              chart.append(svg('text', { x: left - 8, y: y + 4, 'text-anchor': 'end', class: 'tick' }, format(v)));
            }
            const slot = plotW / Math.max(points.length, 1);
            const width = Math.max(2, Math.min(slot * 0.7, 44));
            const labelEvery = Math.ceil(points.length / 8);
            points.forEach((point, i) => {
              const height = (plotH * point.value) / max;
              const x = left + slot * i + (slot - width) / 2;
              const bar = svg('rect', {
                x, y: top + plotH - height, width, height: point.value > 0 ? Math.max(height, 1) : 0, rx: 2, class: `bar ${series}`,
              });
              bar.append(svg('title', {}, `${point.label}: ${format(point.value)}`));
              chart.append(bar);
              if (i % labelEvery === 0) {
                chart.append(svg('text', { x: left + slot * i + slot / 2, y: H - 10, 'text-anchor': 'middle', class: 'tick' }, point.label.slice(5)));
              }
            });
            if (peak === 0) {
              chart.append(svg('text', { x: left + plotW / 2, y: top + plotH / 2, 'text-anchor': 'middle', class: 'empty' }, emptyText));
            }
          }

          function renderCharts(report) {
            const byDay = new Map(report.groups.map((g) => [g.group, g]));
            const days = daysOf(report.since, report.until);
            drawBars($('#chart-requests'), days.map((d) => ({ label: d, value: byDay.has(d) ? byDay.get(d).requests : 0 })), fmtCompact, 'requests', true, 'No requests in this window');
            drawBars($('#chart-cost'), days.map((d) => ({ label: d, value: byDay.has(d) ? byDay.get(d).cost_usd : 0 })), fmtUSD, 'cost', false, 'No priced requests in this window');
          }

          function fillRows(table, rows, emptyText) {
            const body = $('tbody', table);
            const columns = $$('thead th', table).length;
            if (rows.length === 0) {
              body.replaceChildren(el('tr', {}, el('td', { class: 'empty', colspan: columns }, emptyText)));
            } else {
              body.replaceChildren(...rows);
            }
          }

          function renderTop(table, groups, label, emptyText) {
            const top = groups.slice().sort((a, b) => b.requests - a.requests).slice(0, 8);
            fillRows(table, top.map((g) => el('tr', {},
              el('td', { class: 'ellipsis', title: label(g.group) }, label(g.group)),
              el('td', { class: 'num' }, fmtInt(g.requests)),
              el('td', { class: 'num' }, fmtCompact(tokensOf(g))),
              el('td', { class: 'num' }, fmtUSD(g.cost_usd)),
              el('td', { class: 'num' }, fmtPct(g.error_rate)),
              el('td', { class: 'num' }, fmtMs(g.p95_latency_ms)),
            )), emptyText);
          }

          function statusBadge(status) {
            const tone = status >= 500 ? 'err' : status >= 400 ? 'warn' : 'ok';
            return el('span', { class: `badge ${tone}` }, String(status));
          }

          function renderRecent() {
            const model = $('#filter-model').value.trim().toLowerCase();
            const statusClass = $('#filter-status').value;
            const hitsOnly = $('#filter-cache').checked;
            const rows = state.recent.filter((r) =>
              (!model || (r.model || '').toLowerCase().includes(model)) &&
              (!statusClass || String(Math.floor(r.status / 100)) === statusClass) &&
              (!hitsOnly || r.cache_hit));
            $('#recent-count').textContent = `${fmtInt(rows.length)} of the latest ${fmtInt(state.recent.length)}`;
            fillRows($('#recent'), rows.slice(0, 200).map((r) => el('tr', {},
              el('td', { title: new Date(r.time * 1000).toISOString() }, fmtTime(r.time)),
              el('td', { class: 'ellipsis', title: r.model || '' }, r.model || '—'),
              el('td', { class: 'mono' }, r.route),
              el('td', { class: 'ellipsis' }, keyLabel(r.key_id)),
              el('td', { class: 'num', title: r.error_code || '' }, statusBadge(r.status)),
              el('td', { class: 'num' }, fmtMs(r.latency_ms)),
              el('td', { class: 'num', title: r.tokens_estimated ? 'estimated' : '' }, fmtInt(tokensOf(r)) + (r.tokens_estimated ? '*' : '')),
              el('td', { class: 'num' }, fmtUSD(r.cost_usd)),
              el('td', {}, r.cache_hit ? el('span', { class: 'badge hit' }, 'HIT') : el('span', { class: 'muted' }, '—')),
            )), state.recent.length ? 'No request matches these filters' : 'No requests in this window');
          }

          // /readyz answers 503 while no upstream is ready, with the same body: read it either way.
          async function refreshUpstreams() {
            try {
              const body = await (await fetch('/readyz', { credentials: 'same-origin' })).json();
              fillRows($('#upstreams'), body.upstreams.map((u) => el('tr', {},
                el('td', { class: 'ellipsis' }, u.name),
                el('td', {}, u.kind),
                el('td', {}, u.state),
                el('td', { title: u.error || '' }, u.ok ? el('span', { class: 'badge ok' }, 'ready') : el('span', { class: 'badge err' }, u.error || 'down')),
                el('td', { class: 'mono' }, (u.loaded_models || []).join(', ') || '—'),
              )), 'No upstreams');
            } catch (error) {
              // The overview's banner already reports an unreachable gateway.
            }
          }

          async function loadKeyNames() {
            const list = await api('/admin/keys');
            state.keyNames = new Map(list.data.map((k) => [k.id, k.name]));
            return list.data;
          }

          async function refreshOverview() {
            if (state.loading) return;
            state.loading = true;
            const since = encodeURIComponent(state.window);
            try {
              const [days, models, keys, recent] = await Promise.all([
                api(`/admin/usage?since=${since}&by=day`),
                api(`/admin/usage?since=${since}&by=model`),
                api(`/admin/usage?since=${since}&by=key`),
                api(`/admin/usage/recent?since=${since}&limit=500`),
                loadKeyNames(),
              ]);
              refreshUpstreams();
              renderKPIs(days.totals);
              renderCharts(days);
              renderTop($('#top-models'), models.groups, (g) => g || '(no model)', 'No models used in this window');
              renderTop($('#top-keys'), keys.groups, keyLabel, 'No keys used in this window');
              state.recent = recent.data;
              $('#model-names').replaceChildren(...models.groups.filter((g) => g.group).map((g) => el('option', { value: g.group })));
              renderRecent();
              $('#updated').textContent = 'Updated ' + new Date().toLocaleTimeString('en-GB', { hour12: false });
              showBanner('');
            } catch (error) {
              showBanner(error.message);
            } finally {
              state.loading = false;
            }
          }

          function keyStatus(key) {
            if (key.revoked) return el('span', { class: 'badge off' }, 'revoked');
            if (key.expires_at && key.expires_at * 1000 < Date.now()) return el('span', { class: 'badge warn' }, 'expired');
            return el('span', { class: 'badge ok' }, 'active');
          }

          function limitsOf(key) {
            const parts = [];
            if (key.rpm) parts.push(`${fmtInt(key.rpm)} rpm`);
            if (key.tpm) parts.push(`${fmtInt(key.tpm)} tpm`);
            if (key.budget_usd !== null && key.budget_usd !== undefined) {
              const period = key.budget_period && key.budget_period !== 'total' ? ` ${key.budget_period}` : '';
              parts.push(`${fmtUSD(key.spent_usd || 0)} of ${fmtUSD(key.budget_usd)}${period} budget`);
            }
            if (key.team_id) parts.push(`team ${state.teamNames.get(key.team_id) || key.team_id}`);
            return parts.join(' · ') || '—';
          }

          async function refreshTeams() {
            const teams = (await api('/admin/teams')).data;
            state.teamNames = new Map(teams.map((t) => [t.id, t.name]));
            fillRows($('#teams-table'), teams.map((team) => el('tr', {},
              el('td', {}, team.name),
              el('td', { class: 'mono muted' }, team.id),
              el('td', { class: 'num' }, fmtInt(team.keys)),
              el('td', {}, limitsOf(team)),
              el('td', { class: 'ellipsis', title: team.models.join(', ') }, team.models.length ? team.models.join(', ') : 'all'),
            )), 'No teams yet');
          }

          async function refreshKeys() {
            try {
              await refreshTeams();
              const keys = (await loadKeyNames()).slice().sort((a, b) => (a.revoked - b.revoked) || (b.created_at - a.created_at));
              fillRows($('#keys-table'), keys.map((key) => el('tr', {},
                el('td', {}, key.name),
                el('td', { class: 'mono' }, key.prefix + '…'),
                el('td', { class: 'mono muted' }, key.id),
                el('td', {}, fmtTime(key.created_at)),
                el('td', {}, fmtTime(key.last_used_at)),
                el('td', {}, limitsOf(key)),
                el('td', { class: 'ellipsis', title: key.models.join(', ') }, key.models.length ? key.models.join(', ') : 'all'),
                el('td', {}, keyStatus(key)),
                el('td', { class: 'num' }, key.revoked ? null : revokeButton(key)),
              )), 'No API keys yet');
              showBanner('');
            } catch (error) {
              showBanner(error.message);
            }
          }

          function revokeButton(key) {
            const button = el('button', { type: 'button', class: 'button danger' }, 'Revoke');
            button.addEventListener('click', async () => {
              if (!window.confirm(`Revoke the key "${key.name}"? Requests with it fail from now on.`)) return;
              button.disabled = true;
              try {
                await api(`/admin/keys/${encodeURIComponent(key.id)}`, { method: 'DELETE' });
                await refreshKeys();
              } catch (error) {
                button.disabled = false;
                showBanner(error.message);
              }
            });
            return button;
          }

          async function createKey(event) {
            event.preventDefault();
            const form = event.currentTarget;
            const body = { name: form.elements.name.value.trim() };
            const rpm = form.elements.rpm.value.trim();
            if (rpm) body.rpm = Number.parseInt(rpm, 10);
            const models = form.elements.models.value.split(',').map((m) => m.trim()).filter(Boolean);
            if (models.length) body.models = models;
            const submit = $('button[type="submit"]', form);
            submit.disabled = true;
            try {
              const created = await api('/admin/keys', { method: 'POST', body });
              $('#new-secret-value').textContent = created.key;
              $('#new-secret').hidden = false;
              form.reset();
              await refreshKeys();
            } catch (error) {
              showBanner(error.message);
            } finally {
              submit.disabled = false;
            }
          }

          function showPage() {
            const page = window.location.hash === '#keys' ? 'keys' : 'overview';
            for (const section of $$('[data-page]')) section.hidden = section.dataset.page !== page;
            for (const tab of $$('[data-tab]')) tab.classList.toggle('active', tab.dataset.tab === page);
            if (page === 'keys') refreshKeys(); else refreshOverview();
          }

          function start() {
            for (const button of $$('[data-window]')) {
              button.addEventListener('click', () => {
                state.window = button.dataset.window;
                for (const other of $$('[data-window]')) other.classList.toggle('active', other === button);
                refreshOverview();
              });
            }
            $('#refresh').addEventListener('click', refreshOverview);
            for (const id of ['#filter-model', '#filter-status', '#filter-cache']) $(id).addEventListener('input', renderRecent);
            $('#create-key').addEventListener('submit', createKey);
            $('#hide-secret').addEventListener('click', () => {
              $('#new-secret-value').textContent = '';
              $('#new-secret').hidden = true;
            });
            $('#copy-secret').addEventListener('click', async () => {
              const text = $('#new-secret-value').textContent;
              try {
                await navigator.clipboard.writeText(text);
                $('#copy-secret').textContent = 'Copied';
              } catch (_) {
                // Clipboard access needs a secure context; selecting the text lets the user copy it by hand.
                window.getSelection().selectAllChildren($('#new-secret-value'));
              }
            });
            window.addEventListener('hashchange', showPage);
            state.timer = window.setInterval(() => {
              if (!document.hidden && !$('#overview').hidden) refreshOverview();
            }, REFRESH_MS);
            showPage();
          }

          start();
        })();
        """#
}
