"""A real JupyterHub on 127.0.0.1 for tests/test_jupyterhub.py: local Unix users, the hub and its
proxy, and a client for each user's own Jupyter server (REST API and kernels).

Not a test module. Everything runs as root: users are created with ``useradd`` (homes 0700, the
privacy nbgrader's feedback relies on) and removed with ``userdel``; the hub starts each user's
``jupyterhub-singleuser`` from this repository's .venv with the local-process spawner (setuid).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

MARK = "tp3 hub test (temporary)"  # GECOS of the users this module creates, and only removes
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- Unix side

class Traversal:
    """Let other users reach ``paths`` (o+x on each ancestor that lacks it), undone by ``restore``.
    The venv's interpreter may live under /root (pyenv), which is 0700."""

    def __init__(self):
        self.changed: list[tuple[Path, int]] = []

    def grant(self, *paths: Path) -> None:
        for path in paths:
            for folder in [*reversed(Path(path).resolve().parents), Path(path).resolve()]:
                mode = stat.S_IMODE(os.stat(folder).st_mode)
                if folder.is_dir() and not mode & stat.S_IXOTH:
                    os.chmod(folder, mode | stat.S_IXOTH)
                    self.changed.append((folder, mode))

    def restore(self) -> None:
        for folder, mode in reversed(self.changed):
            os.chmod(folder, mode)
        self.changed.clear()


def python_home() -> Path:
    """Where the venv's standard library lives (``home`` of pyvenv.cfg)."""
    cfg = (VENV_BIN.parent / "pyvenv.cfg").read_text()
    home = next(line.split("=", 1)[1].strip() for line in cfg.splitlines() if line.startswith("home"))
    return Path(home).parent


def processes_of(uid: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc.stat().st_uid == uid:
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def create_user(name: str) -> pwd.struct_passwd:
    try:
        existing = pwd.getpwnam(name)
    except KeyError:
        existing = None
    if existing is not None:
        if existing.pw_gecos != MARK:
            raise RuntimeError(f"user {name} exists and was not made by this test: not touching it")
        remove_user(name)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", MARK, name],
                   check=True, capture_output=True)
    user = pwd.getpwnam(name)
    os.chmod(user.pw_dir, 0o700)
    return user


def install_tree(src: Path, name: str, dest: str) -> None:
    """Copy ``src`` into ``~name/dest``, owned by ``name``."""
    user = pwd.getpwnam(name)
    target = Path(user.pw_dir) / dest
    shutil.copytree(src, target, dirs_exist_ok=True)
    for path in [target, *target.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)


def remove_user(name: str) -> None:
    """Kill what still runs as ``name`` (this test's user), then delete it and its home."""
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return
    if user.pw_gecos != MARK:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(user.pw_uid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    subprocess.run(["userdel", "--remove", name], capture_output=True)
    if Path(user.pw_dir).exists() and Path(user.pw_dir).name == name:
        shutil.rmtree(user.pw_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- the hub

class Hub:
    """JupyterHub + configurable-http-proxy on 127.0.0.1, driven with a service's admin token."""

    def __init__(self, folder: Path, users: list[str], environment: dict[str, str]):
        self.folder = folder
        self.port, hub_port, api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = uuid.uuid4().hex
        self.log = folder / "jupyterhub.log"
        config = {
            "JupyterHub": {
                "bind_url": self.url, "hub_bind_url": f"http://127.0.0.1:{hub_port}",
                "db_url": f"sqlite:///{folder / 'jupyterhub.sqlite'}",
                "cookie_secret_file": str(folder / "cookie_secret"),
                "pid_file": str(folder / "jupyterhub.pid"),
                "authenticator_class": "null",  # no login page: the test uses API tokens only
                "spawner_class": "localprocess",
                "cleanup_servers": True,
                "services": [{"name": "tp3-test", "api_token": self.token}],
                "load_roles": [{"name": "tp3-test", "services": ["tp3-test"],
                                "scopes": ["admin:users", "admin:servers", "tokens", "read:users"]}],
            },
            "Authenticator": {"allowed_users": users},
            "ConfigurableHTTPProxy": {"api_url": f"http://127.0.0.1:{api_port}",
                                      "pid_file": str(folder / "proxy.pid"),
                                      "command": [shutil.which("configurable-http-proxy") or "configurable-http-proxy"]},
            "Spawner": {"cmd": [str(VENV_BIN / "jupyterhub-singleuser")], "environment": environment,
                        "start_timeout": 180, "http_timeout": 180, "default_url": "/lab"},
        }
        (folder / "jupyterhub_config.json").write_text(json.dumps(config, indent=1))
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([str(VENV_BIN / "jupyterhub"), "-f", str(self.folder / "jupyterhub_config.json")],
                                            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"JupyterHub not up after {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the hub stops the servers and its proxy
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for pid_file in ("proxy.pid",):  # a proxy the hub could not stop
            path = self.folder / pid_file
            if path.exists():
                try:
                    os.kill(int(path.read_text().strip()), signal.SIGTERM)
                except (ValueError, ProcessLookupError, PermissionError):
                    pass

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def api(self, method: str, path: str, accept: tuple[int, ...] = (), **kwargs) -> requests.Response:
        r = requests.request(method, f"{self.url}/hub/api{path}", timeout=60,
                             headers={"Authorization": f"token {self.token}"}, **kwargs)
        if r.status_code >= 400 and r.status_code not in accept:
            raise RuntimeError(f"{method} /hub/api{path}: {r.status_code} {r.text}\n{self.tail()}")
        return r

    def start_server(self, name: str, timeout: float = 240) -> "UserServer":
        """Start the server of ``name`` (an allowed user: the hub created it), return a client
        with the user's own token."""
        self.api("POST", f"/users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"/users/{name}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"server of {name} not ready after {timeout} s:\n{self.tail()}")
        token = self.api("POST", f"/users/{name}/tokens", json={"note": "tp3 hub test", "expires_in": 3600}).json()["token"]
        return UserServer(f"{self.url}/user/{name}", name, token)


# ----------------------------------------------------------------------------- a user's server

class UserServer:
    """One user's Jupyter server, through the hub's proxy, with that user's token."""

    def __init__(self, url: str, name: str, token: str):
        self.url, self.name, self.token = url, name, token
        self.loop = asyncio.new_event_loop()

    def http(self, method: str, path: str, **kwargs) -> requests.Response:
        r = requests.request(method, f"{self.url}{path}", timeout=300,
                             headers={"Authorization": f"token {self.token}"}, **kwargs)
        if r.status_code >= 400:
            raise RuntimeError(f"{self.name}: {method} {path}: {r.status_code} {r.text[:2000]}")
        return r

    def read(self, path: str) -> dict:
        return self.http("GET", f"/api/contents/{path}", params={"content": 1}).json()

    def write_notebook(self, path: str, nb: dict) -> None:
        self.http("PUT", f"/api/contents/{path}", json={"type": "notebook", "format": "json", "content": nb})

    def nbgrader(self, action: str, course: str, assignment: str) -> dict:
        """nbgrader's assignment list endpoint (what the Assignments tab calls): fetch, submit, fetch_feedback."""
        return self.http("POST", f"/assignments/{action}",
                         params={"course_id": course, "assignment_id": assignment}).json()

    def run_notebook(self, path: str, timeout: float = 600) -> dict:
        """Run every code cell of ``path`` in a kernel started beside it (as Run All does), stop at
        the first error, save the outputs; return the notebook. The zip-making cell is left alone:
        on a hub, students hand in through nbgrader's Assignments tab."""
        nb = self.read(path)["content"]
        session = self.http("POST", "/api/sessions", json={"path": path, "type": "notebook", "name": path,
                                                          "kernel": {"name": "python3"}}).json()
        try:
            kernel = Kernel(self, session["kernel"]["id"])
            for cell in nb["cells"]:
                if cell["cell_type"] != "code" or "make_submission(" in "".join(cell["source"]):
                    continue
                outputs, reply = kernel.execute(cell["source"], timeout)
                cell["outputs"], cell["execution_count"] = outputs, reply.get("execution_count")
                if reply["status"] != "ok":
                    self.write_notebook(path, nb)
                    raise RuntimeError(f"{self.name}: {path}: cell failed: {reply.get('ename')}: {reply.get('evalue')}")
            kernel.close()
        finally:
            self.http("DELETE", f"/api/sessions/{session['id']}")
        self.write_notebook(path, nb)
        return nb

    def python(self, code: str, timeout: float = 900):
        """Run ``code`` in a fresh kernel of this user (cwd: home); return what it prints as JSON
        on its last line."""
        kernel_id = self.http("POST", "/api/kernels", json={"name": "python3"}).json()["id"]
        try:
            kernel = Kernel(self, kernel_id)
            outputs, reply = kernel.execute(code, timeout)
            kernel.close()
        finally:
            self.http("DELETE", f"/api/kernels/{kernel_id}")
        text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout")
        if reply["status"] != "ok":
            raise RuntimeError(f"{self.name}: {reply.get('ename')}: {reply.get('evalue')}\n{text[-3000:]}")
        return json.loads(text.strip().splitlines()[-1])

    def command(self, args: list[str], cwd: str = ".", timeout: float = 900) -> dict:
        """A command run by this user from a kernel: ``{"rc", "out", "err"}``."""
        code = ("import json, subprocess\n"
                f"r = subprocess.run({args!r}, cwd={cwd!r}, capture_output=True, text=True, timeout={timeout})\n"
                "print(json.dumps({'rc': r.returncode, 'out': r.stdout[-30000:], 'err': r.stderr[-30000:]}))\n")
        return self.python(code, timeout + 60)


class Kernel:
    """The kernel's websocket (``/api/kernels/<id>/channels``), JSON messages."""

    def __init__(self, server: UserServer, kernel_id: str):
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        self.server, self.session = server, uuid.uuid4().hex
        url = server.url.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
        request = HTTPRequest(url, headers={"Authorization": f"token {server.token}"}, request_timeout=60)

        async def connect():  # the connection belongs to the loop it is made in
            return await websocket_connect(request)

        self.ws = server.loop.run_until_complete(connect())

    def execute(self, code: str, timeout: float) -> tuple[list[dict], dict]:
        return self.server.loop.run_until_complete(asyncio.wait_for(self._execute(code), timeout))

    async def _execute(self, code: str) -> tuple[list[dict], dict]:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": self.server.name,
                  "session": self.session, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": "5.3"}
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
        await self.ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {},
                                                "content": content, "channel": "shell", "buffers": []}))
        outputs: list[dict] = []
        reply, idle = None, False
        while reply is None or not idle:
            raw = await self.ws.read_message()
            if raw is None:
                raise RuntimeError(f"{self.server.name}: kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, body = msg["header"]["msg_type"], msg["content"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                reply = body
            elif kind == "status":
                idle = body["execution_state"] == "idle"
            elif kind == "stream":
                outputs.append({"output_type": "stream", "name": body["name"], "text": body["text"]})
            elif kind in ("display_data", "execute_result"):
                out = {"output_type": kind, "data": body["data"], "metadata": body.get("metadata", {})}
                if kind == "execute_result":
                    out["execution_count"] = body["execution_count"]
                outputs.append(out)
            elif kind == "error":
                outputs.append({"output_type": "error", "ename": body["ename"], "evalue": body["evalue"],
                                "traceback": body["traceback"]})
        return outputs, reply

    def close(self) -> None:
        async def close():  # inside its loop: the closing frame is written there
            self.ws.close()

        self.server.loop.run_until_complete(close())
