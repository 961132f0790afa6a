"""A whole cloud on one machine: hanet-server, network nodes, compute nodes and VMs, each in
its own network namespace, driven through the same API an operator uses.

    cloud = Cloud("demo", network_nodes=3, compute_nodes=2).up()
    cloud.client().get("/v2.0/agents")
    cloud.vm_create("vm1", "private", "cmp1")
    cloud.exec("vm1", ["ping", "-c1", "203.0.113.1"])
    cloud.crash("net1"); cloud.recover("net1")
    cloud.down()

The cloud outlives the process that made it (``Cloud.load(prefix)`` finds it again from
``/run/hanet-lab/{prefix}/cloud.json``), and ``down`` removes it even when that file is
missing or the ``up`` that wrote it was killed half-way.

The API is reached from the machine's own namespace on 127.0.0.1 without a single interface,
address or route added there: ``up`` binds the listening socket itself, in this namespace,
and hands it to hanet-server (``--listen-fd``), which runs in the controller's namespace and
also serves the nodes on 10.0.0.10:9696. Layout and files: hanet.lab.cloud_config.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hanet.lab import cloud_config as config
from hanet.lab import cloud_nodes as nodes
from hanet.lab.cloud_nodes import DownReport
from hanet.lab.cloud_state import (
    RUN_ROOT,
    CloudError,
    CloudState,
    NodeRecord,
    ProcessRecord,
    VmRecord,
    check_counts,
    check_prefix,
    load_state,
    save_state,
)
from hanet.lab.daemons import WaitTimeout, control_request, wait_until
from hanet.lab.lab import Lab
from hanet.server.client import ApiClient

if TYPE_CHECKING:
    from hanet.lab.cloud_faults import CrashReport

Progress = Callable[[str], None]


def _quiet(_step: str) -> None:
    pass


def _script(name: str, module: str) -> list[str]:
    """This environment's console script, or its module under this interpreter."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def server_takes_listen_fd() -> bool:
    from hanet.server.main import main as server_main

    return any("--listen-fd" in getattr(param, "opts", ()) for param in server_main.params)


def server_knows(setting: str) -> bool:
    from hanet.server.config import ServerConfig

    return setting in {f.name for f in fields(ServerConfig)}


def agent_command() -> list[str] | None:
    script = Path(sys.executable).parent / "hanet-agent"
    if script.exists():
        return [str(script)]
    found = shutil.which("hanet-agent")
    return [found] if found else None


class Cloud:
    def __init__(
        self,
        prefix: str = "cloud",
        network_nodes: int = 3,
        compute_nodes: int = 2,
        *,
        port: int = 0,
        run_root: Path = RUN_ROOT,
        agents: bool = True,
    ) -> None:
        check_prefix(prefix)
        check_counts(network_nodes, compute_nodes)
        self.prefix, self.port = prefix, port
        self.paths = config.CloudPaths.of(prefix, run_root)
        self.run_root = run_root
        self.topology = config.cloud_topology(prefix, network_nodes, compute_nodes)
        self.lab = Lab(self.topology, prefix)
        self.state = CloudState(prefix, network_nodes, compute_nodes, with_agents=agents)
        self._children: list[subprocess.Popen[bytes]] = []

    @classmethod
    def load(cls, prefix: str = "cloud", *, run_root: Path = RUN_ROOT) -> Cloud:
        """The running cloud ``prefix``, as its cloud.json describes it."""
        check_prefix(prefix)
        state = load_state(config.CloudPaths.of(prefix, run_root).state)
        cloud = cls(prefix, state.network_nodes, state.compute_nodes, run_root=run_root)
        cloud.state = state
        if state.endpoint:
            cloud.port = int(state.endpoint.rpartition(":")[2])
        return cloud

    # Names -------------------------------------------------------------------------------

    @property
    def network_nodes(self) -> list[str]:
        return config.network_node_names(self.state.network_nodes)

    @property
    def compute_nodes(self) -> list[str]:
        return config.compute_node_names(self.state.compute_nodes)

    @property
    def nodes(self) -> list[str]:
        return ["ctl", *self.network_nodes, *self.compute_nodes, "upstream"]

    @property
    def endpoint(self) -> str:
        if not self.state.endpoint:
            raise CloudError(f"cloud {self.prefix} has no endpoint (is it up?)")
        return self.state.endpoint

    def namespace(self, name: str) -> str:
        """The namespace of a node (ctl, netK, cmpK, upstream) or of a VM."""
        if name in self.nodes:
            return self.lab.ns(name)
        if name in self.state.vms:
            return self.state.vms[name].namespace
        vms = ", ".join(sorted(self.state.vms)) or "none"
        raise CloudError(
            f"cloud {self.prefix} has no node or VM {name!r} "
            f"(nodes: {', '.join(self.nodes)}; VMs: {vms})"
        )

    def _node(self, name: str) -> str:
        if name not in self.nodes:
            raise CloudError(
                f"cloud {self.prefix} has no node {name!r} (nodes: {', '.join(self.nodes)})"
            )
        return name

    def client(self) -> ApiClient:
        return ApiClient(self.endpoint)

    # Life cycle --------------------------------------------------------------------------

    def up(self, progress: Progress = _quiet, timeout: float = 90) -> Cloud:
        """Build the cloud and wait until every agent is alive; on any failure (or Ctrl-C)
        everything made so far is removed again."""
        existing = nodes.cloud_namespaces(self.prefix)
        if self.paths.root.exists() or existing:
            raise CloudError(
                f"cloud {self.prefix} exists already ({self.paths.root}"
                f"{', ' + ', '.join(existing) if existing else ''}): "
                f"'hanet lab cloud down --prefix {self.prefix}' first"
            )
        if not server_takes_listen_fd():
            raise CloudError("hanet-server has no --listen-fd in this environment")
        if self.state.with_agents and agent_command() is None:
            raise CloudError("hanet-agent is not installed in this environment")
        try:
            self.paths.root.mkdir(parents=True)
        except FileExistsError:  # another up of this prefix got there first
            raise CloudError(f"cloud {self.prefix} exists already ({self.paths.root})") from None
        try:
            with self._locked():
                save_state(self.paths.state, self.state)  # from here on, down knows it
                self._build(progress, timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _build(self, progress: Progress, timeout: float) -> None:
        progress("namespaces, switch and links")
        self.lab.up()
        for namespace in [self.lab.switch_ns, *(self.lab.ns(name) for name in self.nodes)]:
            nodes.learn_no_arp_from_garps(namespace)
        for name in self.nodes:
            addresses = {
                ifname: " ".join(str(a) for a in link.addresses)
                for ifname, link in self.topology.hosts[name].interfaces.items()
            }
            self.state.nodes[name] = NodeRecord(
                name, config.node_role(name), self.lab.ns(name), addresses
            )
        self._save()
        progress("hanet-server in ctl")
        self._start_server()
        progress("external network 'public'")
        self._create_public()
        progress("metadata service")
        self._start_metadata()
        progress(f"vrrpd on {', '.join(self.network_nodes)}")
        for node in self.network_nodes:
            self._start_vrrpd(node)
        for node in self.network_nodes:
            self._wait_vrrpd(node)
        if self.state.with_agents:
            hosts = [*self.network_nodes, *self.compute_nodes]
            progress(f"hanet-agent on {', '.join(hosts)}")
            for node in hosts:
                self._start_agent(node)
            self.wait_agents(hosts, timeout=timeout)

    def down(self) -> DownReport:
        report = nodes.destroy(self.prefix, self.run_root)
        for child in self._children:  # ours to reap, once killed
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._children.clear()
        return report

    def __enter__(self) -> Cloud:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One change of the cloud at a time, across processes (vm create, crash, ...)."""
        if not self.paths.root.exists():
            raise CloudError(f"cloud {self.prefix} is not up ({self.paths.root} is missing)")
        with open(self.paths.lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _reload(self) -> None:
        if self.paths.state.exists():
            self.state = load_state(self.paths.state)

    def _save(self) -> None:
        save_state(self.paths.state, self.state)

    # Daemons -----------------------------------------------------------------------------

    def _spawn(
        self, node: str, role: str, argv: Sequence[str], pass_fds: Sequence[int] = ()
    ) -> ProcessRecord:
        started = nodes.spawn(
            self.lab.ns(node),
            argv,
            self.paths.log(node, role),
            role=role,
            node=node,
            pass_fds=pass_fds,
        )
        self._children.append(started.popen)
        self.state.processes.append(started.record)
        self._save()
        return started.record

    def _check_running(self, record: ProcessRecord) -> None:
        if not record.alive():
            log = self.paths.log(record.node, record.role)
            raise CloudError(f"{record.role} on {record.node} exited; {log}:\n{nodes.tail(log)}")

    def _wait(
        self, record: ProcessRecord, ready: Callable[[], Any], what: str, timeout: float
    ) -> Any:
        def check() -> Any:
            self._check_running(record)
            return ready()

        try:
            return wait_until(check, timeout, what, step=0.1)
        except WaitTimeout as exc:
            log = self.paths.log(record.node, record.role)
            raise CloudError(f"{exc}; {log}:\n{nodes.tail(log)}") from None

    def _start_server(self, timeout: float = 60) -> None:
        self.paths.server.mkdir(parents=True, exist_ok=True)
        settings = config.server_settings(self.paths, server_knows("agent_gone_time"))
        self.paths.server_config.write_text(config.dump_yaml(settings))
        # Bound here, in the machine's own namespace, and served from inside ctl: the
        # endpoint needs no interface, address or route in this namespace.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise CloudError(
                    f"cannot listen on 127.0.0.1:{self.port}: {exc.strerror}"
                ) from None
            listener.listen(128)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            argv = [*_script("hanet-server", "hanet.server.main"),
                    *config.server_arguments(self.paths, fd)]  # fmt: skip
            record = self._spawn("ctl", "server", argv, pass_fds=[fd])
        self.state.endpoint = f"http://127.0.0.1:{self.port}"
        self._save()
        self._wait(record, self._server_answers, f"hanet-server at {self.endpoint}", timeout)

    def _server_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/v2.0/networks", timeout=2) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _create_public(self) -> None:
        api = self.client()
        network = api.post("/v2.0/networks", {"network": config.PUBLIC_NETWORK})
        if network.status != 201:
            raise CloudError(f"creating network public: {network.status} {network.body}")
        subnet_body = config.public_subnet(network.body["network"]["id"])
        subnet = api.post("/v2.0/subnets", {"subnet": subnet_body})
        if subnet.status != 201:
            raise CloudError(f"creating public's subnet: {subnet.status} {subnet.body}")

    def _start_metadata(self, timeout: float = 30) -> None:
        self.paths.metadata.mkdir(parents=True, exist_ok=True)
        # A socket file left by a killed service would pass for the new one being ready.
        self.paths.metadata_socket.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "hanet.lab.metadata_service",
            "--socket",
            str(self.paths.metadata_socket),
            "--server",
            config.SERVER_URL,
        ]
        record = self._spawn("ctl", "metadata", argv)
        self._wait(record, self.paths.metadata_socket.is_socket, "the metadata service", timeout)

    def _start_vrrpd(self, node: str) -> ProcessRecord:
        self.paths.node(node).mkdir(parents=True, exist_ok=True)
        self.paths.vrrpd_config(node).write_text(config.VRRPD_CONF)
        argv = [
            *_script("hanet", "hanet.cli.main"),
            "--log-level",
            "info",
            "vrrpd",
            "-f",
            str(self.paths.vrrpd_config(node)),
            "--pid-file",
            str(self.paths.vrrpd_pid(node)),
            "--control-socket",
            str(self.paths.vrrpd_socket(node)),
        ]
        return self._spawn(node, "vrrpd", argv)

    def _wait_vrrpd(self, node: str, timeout: float = 30) -> None:
        record = self.state.processes_of(node, "vrrpd")[-1]
        socket_path = self.paths.vrrpd_socket(node)
        self._wait(
            record,
            lambda: control_request(socket_path, {"command": "status"}, 1),
            f"vrrpd on {node}",
            timeout,
        )

    def _start_agent(self, node: str) -> ProcessRecord:
        command = agent_command()
        if command is None:
            raise CloudError("hanet-agent is not installed in this environment")
        self.paths.agent_run(node).mkdir(parents=True, exist_ok=True)
        settings = config.agent_settings(self.paths, self.prefix, node)
        self.paths.agent_config(node).write_text(config.dump_yaml(settings))
        return self._spawn(
            node, "agent", [*command, "run", "--config", str(self.paths.agent_config(node))]
        )

    # Agents ------------------------------------------------------------------------------

    def agents(self) -> list[dict[str, Any]]:
        reply = self.client().get("/v2.0/agents")
        if reply.status != 200:
            raise CloudError(f"GET /v2.0/agents: {reply.status} {reply.body}")
        return list(reply.body["agents"])

    def alive_hosts(self) -> set[str]:
        return {a["host"] for a in self.agents() if a.get("alive")}

    def wait_agents(
        self, hosts: Sequence[str] | None = None, *, alive: bool = True, timeout: float = 60
    ) -> None:
        """Until each host's agents are alive (or, with alive=False, none is)."""
        wanted = set(hosts if hosts is not None else [*self.network_nodes, *self.compute_nodes])

        def done() -> bool:
            for record in self.state.processes:
                if alive and record.role == "agent" and record.node in wanted:
                    self._check_running(record)
            found = self.alive_hosts()
            return wanted <= found if alive else not wanted & found

        try:
            wait_until(
                done,
                timeout,
                f"agents of {', '.join(sorted(wanted))} {'alive' if alive else 'dead'}",
                step=0.2,
            )
        except WaitTimeout as exc:
            logs = "\n".join(
                f"--- {node} agent.log\n{nodes.tail(self.paths.log(node, 'agent'))}"
                for node in sorted(wanted)
            )
            raise CloudError(f"{exc}\n{logs}") from None

    def logs(self, lines: int = 40) -> str:
        """The last lines of every daemon's log, for a failed test's report."""
        parts = []
        for record in self.state.processes:
            path = self.paths.log(record.node, record.role)
            parts.append(f"--- {record.node} {record.role} ({path})\n{nodes.tail(path, lines)}")
        return "\n".join(parts)

    def agent_status(self, node: str) -> dict[str, Any]:
        """The agent's status.json ({} until it wrote one)."""
        try:
            data = json.loads(self.paths.agent_status(self._node(node)).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def restart_agent(self, node: str, timeout: float = 30) -> None:
        """SIGTERM the node's agent (leaving its data path), start it again, and wait until
        it has written that it is registered."""
        if node not in [*self.network_nodes, *self.compute_nodes]:
            raise CloudError(f"{node!r} runs no agent")
        with self._locked():
            self._reload()
            for record in self.state.processes_of(node, "agent"):
                nodes.stop(record)
            self.state.forget_processes(node, "agent")
            started = time.time()
            record = self._start_agent(node)
        self._wait_registered(record, started, timeout)

    def _wait_registered(self, record: ProcessRecord, since: float, timeout: float) -> None:
        """Until the agent wrote, after ``since``, that it is registered: the server's agent
        list may still show the agent's previous life as alive."""

        def registered() -> bool:
            status = self.agent_status(record.node)
            return bool(status.get("registered")) and status.get("updated_at", 0) >= since

        self._wait(record, registered, f"{record.node}'s agent to register", timeout)

    # Commands in nodes and VMs -----------------------------------------------------------

    def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        capture: bool = True,
        check: bool = False,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in a node or VM; output captured (text) unless ``capture=False``."""
        if not argv:
            raise CloudError("exec: no command given")
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace(name), *argv],
            capture_output=capture,
            text=True,
            check=check,
            timeout=timeout,
        )

    def vm_create(self, name: str, network: str, host: str, timeout: float = 30) -> VmRecord:
        from hanet.lab.cloud_vms import create

        return create(self, name, network, host, timeout)

    def vm_delete(self, name: str) -> None:
        from hanet.lab.cloud_vms import delete

        delete(self, name)

    # Faults ------------------------------------------------------------------------------

    def crash(self, name: str) -> CrashReport:
        """Power loss of a node: its links are cut (switch side down) and every process in its
        namespace and its router namespaces is killed -9 at once."""
        from hanet.lab.cloud_faults import crash

        return crash(self, self._node(name))

    def recover(self, name: str, timeout: float = 60) -> None:
        """Power back on after ``crash``: links up, the node's daemons started again (and
        awaited)."""
        node = self._node(name)
        agent = None
        with self._locked():
            self._reload()
            if node not in self.state.crashed:
                raise CloudError(f"{node} has not crashed ('hanet lab crash {node}' first)")
            self.lab.restore(node)
            started = time.time()
            if node == "ctl":
                self._start_server(timeout)
                self._start_metadata(timeout)
            elif node in self.network_nodes:
                self._start_vrrpd(node)
                self._wait_vrrpd(node, timeout)
            if self.state.with_agents and node in [*self.network_nodes, *self.compute_nodes]:
                agent = self._start_agent(node)
            self.state.crashed.remove(node)
            self._save()
        if agent is not None:
            self._wait_registered(agent, started, timeout)

    def cut_link(self, node: str, ifname: str) -> None:
        self.lab.cut(self._node(node), ifname)

    def restore_link(self, node: str, ifname: str) -> None:
        self.lab.restore(self._node(node), ifname)

    def cut_management(self, node: str) -> None:
        """The node loses the server (its mgmt link); tunnels and external links stay."""
        self.cut_link(node, "mgmt" if node != "upstream" else "eth0")

    def restore_management(self, node: str) -> None:
        self.restore_link(node, "mgmt" if node != "upstream" else "eth0")

    def cut_vrrp(self, node: str) -> None:
        """VRRP to and from the node's routers is dropped; all other traffic still flows."""
        nodes.cut_vrrp(self.lab.ns(self._node(node)))

    def restore_vrrp(self, node: str) -> None:
        nodes.restore_vrrp(self.lab.ns(self._node(node)))
