"""Helpers shared by the end-to-end tests: process management, polling, SSE parsing.

The fixtures in conftest.py are built from these; tests may also use them directly
when they need a process with special arguments.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import httpx
import ollama
import openai

REPO_ROOT = Path(__file__).resolve().parents[2]

# Tests talk only to 127.0.0.1: never through a proxy configured in the environment.
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "127.0.0.1", "localhost"]))

# Every wait in the suite is bounded by one of these deadlines (seconds).
STARTUP_DEADLINE = float(os.environ.get("SLUICE_E2E_STARTUP_DEADLINE", "30"))
CONDITION_DEADLINE = float(os.environ.get("SLUICE_E2E_CONDITION_DEADLINE", "15"))
STOP_DEADLINE = float(os.environ.get("SLUICE_E2E_STOP_DEADLINE", "15"))
POLL_INTERVAL = 0.05

MOCK_PREFIX = "Hello from the Sluice mock. You said:"
MODELS = ("llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest")
CHAT_MODEL = "llama3.2"
EMBED_MODEL = "nomic-embed-text"

T = TypeVar("T")


def sluice_bin() -> Path:
    """The binary under test: $SLUICE_BIN, else .build/debug/sluice in the repo."""
    value = os.environ.get("SLUICE_BIN")
    path = Path(value) if value else REPO_ROOT / ".build" / "debug" / "sluice"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nonce() -> str:
    """A unique word, so that a prompt is never answered from the gateway's cache."""
    return "n" + uuid.uuid4().hex[:12]


def expected_reply(prompt: str) -> str:
    return f"{MOCK_PREFIX} {prompt}"


def word_count(text: str) -> int:
    return len(text.split())


def wait_until(
    condition: Callable[[], Optional[T]],
    what: str,
    deadline: float = CONDITION_DEADLINE,
    on_timeout: Callable[[], str] = lambda: "",
) -> T:
    """Poll `condition` until it returns a truthy value; fail with a clear message at the deadline.

    Exceptions raised by `condition` count as "not yet" and are reported at the deadline.
    """
    end = time.monotonic() + deadline
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_error = e
        if time.monotonic() >= end:
            detail = f" (last error: {last_error!r})" if last_error else ""
            extra = on_timeout()
            raise AssertionError(
                f"timed out after {deadline:.0f}s waiting for {what}{detail}"
                + (f"\n{extra}" if extra else "")
            )
        time.sleep(POLL_INTERVAL)


def clean_env(extra: Optional[dict] = None) -> dict:
    """The parent's environment without any SLUICE_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass(repr=False)
class ManagedProcess:
    """A child process whose stdout/stderr go to files; always stopped by its owner."""

    name: str
    argv: list
    log_dir: Path
    env: dict
    cwd: Path
    popen: Optional[subprocess.Popen] = None
    stdout_path: Path = field(init=False)
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.log_dir / f"{self.name}.stdout.log"
        self.stderr_path = self.log_dir / f"{self.name}.stderr.log"

    def __repr__(self) -> str:
        pid = self.popen.pid if self.popen else None
        return f"<{self.name} pid={pid} exit={self.returncode()} logs={self.log_dir}>"

    def start(self) -> "ManagedProcess":
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=str(self.cwd),
                start_new_session=True,  # a Ctrl-C on pytest must not hit the children first
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen is not None and self.popen.poll() is not None

    def returncode(self) -> Optional[int]:
        return None if self.popen is None else self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, deadline: float = STOP_DEADLINE) -> int:
        """Wait for the process to exit; fail with its logs at the deadline."""
        assert self.popen is not None
        try:
            return self.popen.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} (pid {self.pid}) did not exit within {deadline:.0f}s\n{self.logs()}"
            ) from None

    def stop(self, deadline: float = STOP_DEADLINE) -> None:
        """SIGTERM, then SIGKILL if still running at the deadline. Safe to call twice."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=deadline)

    def stdout(self) -> str:
        return _read(self.stdout_path)

    def stderr(self) -> str:
        return _read(self.stderr_path)

    def logs(self, limit: int = 20000) -> str:
        parts = [f"--- {self.name}: {' '.join(map(str, self.argv))} (exit: {self.returncode()})"]
        for label, text in (("stdout", self.stdout()), ("stderr", self.stderr())):
            if len(text) > limit:
                text = "[... truncated ...]\n" + text[-limit:]
            parts.append(f"--- {self.name} {label}:\n{text}")
        return "\n".join(parts)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if pytest itself dies (Linux), so nothing is orphaned."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - best effort; teardown still stops the process
        pass


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# Processes alive for the current test; conftest attaches their logs to failure reports.
LIVE_PROCESSES: list = []


@dataclass
class Mock:
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        r = httpx.get(f"{self.url}/mock/stats", timeout=10)
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/mock/reset", timeout=10).raise_for_status()


@dataclass
class Gateway:
    port: int
    process: ManagedProcess
    cwd: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


class ProcessGroup:
    """Starts mock upstreams and gateways for one fixture scope and stops them all at teardown."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.processes: list = []
        self._count = 0

    def _new(self, name: str, argv: list, env: Optional[dict], cwd: Optional[Path]) -> ManagedProcess:
        self._count += 1
        log_dir = self.tmp_dir / "logs"
        work = cwd
        if work is None:
            # A private working directory: no stray .env or sluice.db from the repo.
            work = self.tmp_dir / f"cwd-{self._count}-{name}"
            work.mkdir(parents=True, exist_ok=True)
        proc = ManagedProcess(
            name=f"{self._count:02d}-{name}",
            argv=[str(a) for a in argv],
            log_dir=log_dir,
            env=clean_env(env),
            cwd=work,
        )
        self.processes.append(proc)
        LIVE_PROCESSES.append(proc)
        return proc

    def start_mock(self, *args: str, attempts: int = 3, port: Optional[int] = None) -> Mock:
        """Start `sluice mock-upstream` on a free port (or `port`, to bring a stopped one back) and wait until it answers."""
        last: Optional[ManagedProcess] = None
        fixed = port
        for _ in range(attempts if fixed is None else 1):
            port = fixed if fixed is not None else free_port()
            proc = self._new(
                "mock", [sluice_bin(), "mock-upstream", "--host", "127.0.0.1", "--port", port, *args], None, None
            ).start()
            last = proc
            if _wait_http_ok(proc, f"http://127.0.0.1:{port}/mock/stats"):
                return Mock(port=port, process=proc)
            proc.stop()  # exited early (port grabbed in between?): try another port
        raise AssertionError(f"mock upstream did not become ready\n{last.logs() if last else ''}")

    def start_gateway(
        self,
        upstream: Optional[str] = None,
        args: Iterable[str] = (),
        env: Optional[dict] = None,
        cwd: Optional[Path] = None,
        port: Optional[int] = None,
        pass_port_flag: bool = True,
        attempts: int = 3,
    ) -> Gateway:
        """Start `sluice serve` and wait until GET /healthz is 200.

        `port`: the port to listen on (a free one by default); with pass_port_flag=False the
        port is not given as a flag (the caller sets it through env, a config file or .env).
        """
        last: Optional[ManagedProcess] = None
        for _ in range(attempts if port is None else 1):
            listen = port if port is not None else free_port()
            argv = [sluice_bin(), "serve"]
            if pass_port_flag:
                argv += ["--port", listen]
            if upstream is not None:
                argv += ["--upstream", upstream]
            argv += list(args)
            proc = self._new("sluice", argv, env, cwd).start()
            last = proc
            if _wait_http_ok(proc, f"http://127.0.0.1:{listen}/healthz"):
                return Gateway(port=listen, process=proc, cwd=proc.cwd)
            proc.stop()
        raise AssertionError(f"sluice did not answer /healthz\n{last.logs() if last else ''}")

    def run_sluice(self, *args: str, env: Optional[dict] = None, cwd: Optional[Path] = None,
                   deadline: float = STOP_DEADLINE) -> subprocess.CompletedProcess:
        """Run a short-lived sluice command (e.g. check-config) to completion."""
        work = cwd or self.tmp_dir
        return subprocess.run(
            [str(sluice_bin()), *map(str, args)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=clean_env(env),
            cwd=str(work),
            timeout=deadline,
        )

    def stop_all(self) -> None:
        errors = []
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                errors.append(f"{proc.name}: {e!r}")
            finally:
                if proc in LIVE_PROCESSES:
                    LIVE_PROCESSES.remove(proc)
        if errors:
            raise AssertionError("could not stop processes: " + "; ".join(errors))


def _wait_http_ok(proc: ManagedProcess, url: str, deadline: float = STARTUP_DEADLINE) -> bool:
    """True once `url` answers 200; False if the process exits first; fails at the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.exited():
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(POLL_INTERVAL)
    proc.stop()
    raise AssertionError(f"{proc.name} did not answer 200 on {url} within {deadline:.0f}s\n{proc.logs()}")


# ---------------------------------------------------------------------------------------------
# Server-sent events


@dataclass
class SSEEvent:
    event: Optional[str]
    data: str

    def json(self):
        return json.loads(self.data)


def iter_sse(lines: Iterable[str]) -> Iterator[SSEEvent]:
    """Parse text/event-stream lines into events (enough of the spec for these tests)."""
    event: Optional[str] = None
    data: list = []
    for line in lines:
        if line == "":
            if data or event is not None:
                yield SSEEvent(event=event, data="\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data or event is not None:
        yield SSEEvent(event=event, data="\n".join(data))


def chat_body(prompt: str, stream: bool = False, model: str = CHAT_MODEL, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    body.update(extra)
    return body


def assert_openai_error(response: httpx.Response, status: int, code: Optional[str] = None,
                        param: object = ...) -> dict:
    """Check an error response has the status and OpenAI's error shape; return the error object."""
    assert response.status_code == status, (
        f"expected HTTP {status}, got {response.status_code}: {response.text[:500]}"
    )
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {response.text[:500]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not OpenAI error shape: {body}"
    error = body["error"]
    for key in ("message", "type", "param", "code"):
        assert key in error, f"error object lacks {key!r}: {error}"
    assert isinstance(error["message"], str) and error["message"], f"empty error message: {error}"
    if code is not None:
        assert error["code"] == code, f"expected code {code!r}, got {error['code']!r}: {error}"
    if param is not ...:
        assert error["param"] == param, f"expected param {param!r}, got {error['param']!r}: {error}"
    return error


def make_openai(gateway: Gateway) -> openai.OpenAI:
    """The official client pointed at the gateway; no retries, so one call is one request."""
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=30)


def make_ollama(gateway: Gateway) -> ollama.Client:
    return ollama.Client(host=gateway.url, timeout=30)


class OutageProxy:
    """Forwards 127.0.0.1:port to a target port until `down()`, which cuts every connection and stops listening."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            _shutdown(listener)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            _shutdown(s)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                # Accepted just as `down()` ran: this listener is closed, so the connection must not survive it.
                cut = self._listener is not listener
                if not cut:
                    self._sockets += [client, server]
            if cut:
                for s in (client, server):
                    _shutdown(s)
                    s.close()
                return
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(sink)


def _shutdown(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
