"""The chart's frpc config works with real frps/frpc 0.65: replicas share one subdomain, and
a new group's credentials come from Git (SOPS-encrypted, decrypted by the Flux stand-in).

frps and two frpc processes run on 127.0.0.1 with the exact TOML `helm template` renders;
HTTP requests with `Host: {release}.code-hub.com` reach a local backend through frps.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_bridge import sops
from tests import kubelet
from tests.apputil import TEAM_A, make_app, web
from tests.fluxstandin import FluxStandIn
from tests.kubefake import FakeKube

RELEASE = "shop-q1w2e3"
DOMAIN = "code-hub.com"
TOKEN = "s3cret-frps-token"
GROUP_KEY = "group-key-of-team"
DASHBOARD_USER, DASHBOARD_PASSWORD = "admin", "dashboard-pw"
BACKEND_BODY = b"hello from the backend"
WAIT = 20.0  # seconds, the bound of every wait


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], bool], logs: Callable[[], str] = str, timeout: float = WAIT
) -> None:
    """Poll check() until true; fail after `timeout` seconds, showing the logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs()}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BACKEND_BODY)))
        self.end_headers()
        self.wfile.write(BACKEND_BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Processes:
    """Started processes, each logging to a file; all stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with self.log_path(name).open("wb") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
            )

    def log_path(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.stem}\n{path.read_text(errors='replace')}"
            for path in sorted(self.tmp_path.glob("*.log"))
        )

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def frpc_toml_from_chart(
    helm: str, chart_dir: Path, tmp_path: Path, *, server_port: int, app_port: int
) -> str:
    values = {
        "image": "registry:5000/team/shop:1.0",
        "replicas": 2,
        "port": app_port,
        "expose": True,
        "frpc": {"serverAddr": "127.0.0.1", "serverPort": server_port},
    }
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    result = subprocess.run(
        [helm, "template", RELEASE, str(chart_dir), "-f", str(values_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [configmap] = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "ConfigMap"]
    return str(configmap["data"]["frpc.toml"])


def get(port: int, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def served(port: int, host: str) -> bool:
    try:
        return get(port, host) == (200, BACKEND_BODY)
    except OSError:
        return False


def dashboard_proxies(port: int) -> dict[str, dict[str, Any]]:
    """frps' own view of the http proxies, by proxy name."""
    credentials = base64.b64encode(f"{DASHBOARD_USER}:{DASHBOARD_PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/api/proxy/http", headers={"Authorization": f"Basic {credentials}"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
    finally:
        conn.close()
    return {p["name"]: p for p in json.loads(body)["proxies"]}


def online(port: int) -> set[str]:
    return {name for name, p in dashboard_proxies(port).items() if p["status"] == "online"}


def start_frps(frps: str, tmp_path: Path, processes: Processes) -> tuple[int, int, int]:
    """frps with the token and a dashboard on free ports: (bind, vhost http, dashboard)."""
    bind_port, vhost_port, dashboard_port = free_port(), free_port(), free_port()
    frps_toml = tmp_path / "frps.toml"
    frps_toml.write_text(
        f'bindAddr = "127.0.0.1"\n'
        f"bindPort = {bind_port}\n"
        f"vhostHTTPPort = {vhost_port}\n"
        f'subDomainHost = "{DOMAIN}"\n'
        f'auth.method = "token"\n'
        f'auth.token = "{TOKEN}"\n'
        f'webServer.addr = "127.0.0.1"\n'
        f"webServer.port = {dashboard_port}\n"
        f'webServer.user = "{DASHBOARD_USER}"\n'
        f'webServer.password = "{DASHBOARD_PASSWORD}"\n'
    )
    processes.start("frps", [frps, "-c", str(frps_toml)])
    for port in (bind_port, vhost_port, dashboard_port):
        wait_for(f"frps port {port}", lambda p=port: port_open(p), processes.logs)
    return bind_port, vhost_port, dashboard_port


def test_replicas_share_the_subdomain_through_real_frp(
    helm: str,
    chart_dir: Path,
    frpc: str,
    frps: str,
    tmp_path: Path,
    backend: int,
    processes: Processes,
) -> None:
    bind_port, vhost_port, dashboard_port = start_frps(frps, tmp_path, processes)

    config = tmp_path / "frpc.toml"
    config.write_text(
        frpc_toml_from_chart(helm, chart_dir, tmp_path, server_port=bind_port, app_port=backend)
    )
    env = {"FRP_TOKEN": TOKEN, "FRP_GROUP_KEY": GROUP_KEY}

    # frpc verify renders the env templates and rejects unknown keys.
    verify = subprocess.run(
        [frpc, "verify", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "POD_NAME": "pod-a"},
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text(config.read_text().replace("loginFailExit", "loginFailExits"))
    rejected = subprocess.run(
        [frpc, "verify", "-c", str(typo)], capture_output=True, text=True, timeout=30, check=False
    )
    assert rejected.returncode != 0, "frpc verify accepts unknown keys: it proves nothing"

    # Two replicas, same config: each registers its own proxy in the shared group.
    for pod in ("pod-a", "pod-b"):
        processes.start(pod, [frpc, "-c", str(config)], env={**env, "POD_NAME": pod})
    replicas = {f"pod-a.{RELEASE}", f"pod-b.{RELEASE}"}
    wait_for("both replicas online", lambda: online(dashboard_port) >= replicas, processes.logs)
    proxies = dashboard_proxies(dashboard_port)
    for name in replicas:
        assert proxies[name]["conf"]["subdomain"] == RELEASE
        assert proxies[name]["conf"]["loadBalancer"]["group"] == RELEASE

    host = f"{RELEASE}.{DOMAIN}"
    wait_for(f"{host} served", lambda: served(vhost_port, host), processes.logs)
    for _ in range(20):
        assert get(vhost_port, host) == (200, BACKEND_BODY)
    assert get(vhost_port, f"{RELEASE}.{DOMAIN}:{vhost_port}") == (200, BACKEND_BODY)

    # A subdomain nobody registered is not routed to the backend.
    for other in (f"other-zzzzzz.{DOMAIN}", f"{RELEASE}.example.com", f"x.{host}"):
        status, body = get(vhost_port, other)
        assert status == 404, (other, status)
        assert BACKEND_BODY not in body

    # The right token but the wrong group key cannot join (or hijack) the group.
    processes.start(
        "intruder",
        [frpc, "-c", str(config)],
        env={"FRP_TOKEN": TOKEN, "FRP_GROUP_KEY": "guessed", "POD_NAME": "pod-x"},
    )
    wait_for(
        "group auth refused",
        lambda: "group auth failed" in processes.log("intruder"),
        processes.logs,
    )
    assert f"pod-x.{RELEASE}" not in online(dashboard_port)
    processes.stop("intruder")

    # A wrong token is refused at login; its proxy never appears.
    processes.start(
        "bad-token",
        [frpc, "-c", str(config)],
        env={"FRP_TOKEN": "wrong", "FRP_GROUP_KEY": GROUP_KEY, "POD_NAME": "pod-c"},
    )
    wait_for(
        "login refused",
        lambda: "token in login doesn't match" in processes.log("bad-token"),
        processes.logs,
    )
    assert f"pod-c.{RELEASE}" not in dashboard_proxies(dashboard_port)
    processes.stop("bad-token")

    # One replica goes away: the other keeps serving the subdomain.
    processes.stop("pod-a")
    wait_for(
        "pod-a offline",
        lambda: f"pod-a.{RELEASE}" not in online(dashboard_port),
        processes.logs,
    )
    assert f"pod-b.{RELEASE}" in online(dashboard_port)
    for _ in range(20):
        assert get(vhost_port, host) == (200, BACKEND_BODY)

    # The last replica goes away: the subdomain is no longer routed.
    processes.stop("pod-b")
    wait_for("subdomain gone", lambda: get(vhost_port, host)[0] == 404, processes.logs)


def test_a_new_groups_first_exposed_deployment_reaches_frps_with_credentials_from_git(
    helm: str,
    kubectl: str,
    frpc: str,
    frps: str,
    tmp_path: Path,
    backend: int,
    processes: Processes,
) -> None:
    """Nothing done by hand in the group: its frp-token Secret comes from Git, encrypted;
    the Flux stand-in decrypts it with the cluster's identity and real frpc logs in."""
    bind_port, _, dashboard_port = start_frps(frps, tmp_path, processes)

    cluster = sops.generate_identity()
    data = tmp_path / "data"
    client = make_app(
        data,
        secrets={"age_recipients": [sops.public_key(cluster)]},
        frp={"token": TOKEN, "server_addr": "127.0.0.1", "server_port": bind_port},
    ).test_client()
    admin = {"X-Forwarded-User": "admin"}
    assert client.post("/api/v1/groups", json=TEAM_A, headers=admin).status_code == 201
    assert (
        TOKEN.encode()
        not in subprocess.run(
            ["git", "-C", str(data / "remote.git"), "log", "-p", "--all"],
            capture_output=True,
            check=True,
        ).stdout
    )
    made = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("shop", port=backend, expose=True),
        headers={"X-Forwarded-User": "alice"},
    )
    assert made.status_code == 201, made.json
    release = made.json["name"]

    with FakeKube() as fake:
        kubelet.cluster_age_key(fake, cluster)
        flux = FluxStandIn(fake, remote=data / "remote.git", helm=helm, kubectl=kubectl)
        flux.reconcile()
        namespace = "group-team-a"
        secret = fake.get("v1", "Secret", namespace, "frp-token")
        assert secret is not None, "frp-token was not applied"
        values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert values["token"] == TOKEN and len(values["group-key"]) >= 24
        (pod,) = [
            p["metadata"]["name"]
            for p in fake.items("v1", "Pod", namespace)
            if p["metadata"]["labels"].get("app.kubernetes.io/instance") == release
        ]
        env = flux.workloads.environment(namespace, pod, "frpc")
        assert env is not None and env["FRP_TOKEN"] == TOKEN
        configmap = fake.get("v1", "ConfigMap", namespace, release)
        assert configmap is not None
        config = tmp_path / "frpc-from-git.toml"
        config.write_text(configmap["data"]["frpc.toml"])

    run_env = {k: env[k] for k in ("FRP_TOKEN", "FRP_GROUP_KEY")} | {"POD_NAME": pod}
    processes.start("frpc-git", [frpc, "-c", str(config)], env=run_env)
    wait_for(
        "the proxy online", lambda: f"{pod}.{release}" in online(dashboard_port), processes.logs
    )
    assert dashboard_proxies(dashboard_port)[f"{pod}.{release}"]["conf"]["subdomain"] == release
