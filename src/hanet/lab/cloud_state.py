"""What a lab cloud is made of, as kept in ``{run}/cloud.json``: names, layout and records.

Pure except for reading and writing the file (atomically) and reading ``/proc`` to tell
whether a recorded PID is still the process that was started. ``hanet lab cloud down``
trusts this file only for PIDs it can confirm: a PID whose start time differs from the
recorded one belongs to someone else now and is never signalled.

Every parse error names the file and the field, e.g. ``/run/hanet-lab/c/cloud.json:
processes[2].pid: expected an integer``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hanet.lab.topology import PREFIX_RE

RUN_ROOT = Path("/run/hanet-lab")
STATE_VERSION = 1
# VM names become namespace names ({prefix}-vm-{name}) and port names: short and plain.
VM_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
# Names the cloud's own hosts have or could have: a VM may not take one, so that
# ``hanet lab exec NAME`` always means one thing.
RESERVED_RE = re.compile(r"^(ctl|sw|upstream|vm|net[0-9]+|cmp[0-9]+)$")
MAX_NETWORK_NODES = 9  # their addresses are .11-.19
MAX_COMPUTE_NODES = 99  # .21-.119


class CloudError(RuntimeError):
    """Something about a lab cloud that the user must hear about; the message says what."""


class StateError(CloudError):
    """cloud.json cannot be read; the message names the file and field."""


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise CloudError(
            f"prefix {prefix!r}: must match {PREFIX_RE.pattern} "
            "(it starts every namespace name of the cloud)"
        )
    return prefix


def check_counts(network_nodes: int, compute_nodes: int) -> None:
    if not 1 <= network_nodes <= MAX_NETWORK_NODES:
        raise CloudError(f"network nodes: {network_nodes}: expected 1 to {MAX_NETWORK_NODES}")
    if not 0 <= compute_nodes <= MAX_COMPUTE_NODES:
        raise CloudError(f"compute nodes: {compute_nodes}: expected 0 to {MAX_COMPUTE_NODES}")


def check_vm_name(name: str) -> str:
    if not isinstance(name, str) or not VM_NAME_RE.match(name):
        raise CloudError(
            f"VM name {name!r}: must match {VM_NAME_RE.pattern} "
            "(a letter, then up to 11 lowercase letters, digits or '-')"
        )
    if RESERVED_RE.match(name):
        raise CloudError(f"VM name {name!r}: taken by the cloud's hosts (ctl, netK, cmpK, ...)")
    return name


# Processes --------------------------------------------------------------------------------


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (/proc/PID/stat field 22), or
    None if there is no such process (or only its zombie, which holds nothing)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    rest = text[text.rfind(")") + 2 :].split()
    if len(rest) < 20 or rest[0] == "Z":
        return None
    return int(rest[19])


@dataclass(frozen=True)
class ProcessRecord:
    role: str  # server, metadata, vrrpd, agent
    node: str  # ctl, net1, cmp1, ...
    pid: int
    start_time: int
    argv: tuple[str, ...]

    def alive(self) -> bool:
        """True only while the PID is the very process that was recorded."""
        return start_time(self.pid) == self.start_time


@dataclass(frozen=True)
class NodeRecord:
    name: str
    role: str  # controller, network, compute, upstream
    namespace: str
    addresses: dict[str, str] = field(default_factory=dict)  # interface -> address/prefix


@dataclass(frozen=True)
class VmRecord:
    name: str
    host: str
    namespace: str
    network_id: str
    port_id: str
    device_id: str
    mac_address: str
    address: str  # address/prefixlen
    tap: str


@dataclass
class CloudState:
    prefix: str
    network_nodes: int
    compute_nodes: int
    endpoint: str | None = None
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    processes: list[ProcessRecord] = field(default_factory=list)
    vms: dict[str, VmRecord] = field(default_factory=dict)
    crashed: list[str] = field(default_factory=list)
    with_agents: bool = True  # False: a cloud without hanet-agent (the server and vrrpd only)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "prefix": self.prefix,
            "network_nodes": self.network_nodes,
            "compute_nodes": self.compute_nodes,
            "endpoint": self.endpoint,
            "nodes": {name: asdict(node) for name, node in self.nodes.items()},
            "processes": [dict(asdict(p), argv=list(p.argv)) for p in self.processes],
            "vms": {name: asdict(vm) for name, vm in self.vms.items()},
            "crashed": list(self.crashed),
            "with_agents": self.with_agents,
        }

    def processes_of(self, node: str, role: str | None = None) -> list[ProcessRecord]:
        return [p for p in self.processes if p.node == node and role in (None, p.role)]

    def forget_processes(self, node: str, role: str | None = None) -> None:
        self.processes = [
            p for p in self.processes if not (p.node == node and role in (None, p.role))
        ]


# The file -----------------------------------------------------------------------------------


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], at: str) -> Any:
    if key not in data:
        raise StateError(f"{at}: missing key '{key}'")
    value = data[key]
    names = {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        dict: "an object",
        list: "a list",
    }
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = names.get(kind, str(kind)) if isinstance(kind, type) else "a string or null"
        raise StateError(f"{at}.{key}: expected {expected}")
    return value


def _record(cls: type, data: Any, at: str, kinds: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise StateError(f"{at}: expected an object")
    values = {key: _get(data, key, kind, at) for key, kind in kinds.items()}
    return cls(**values)


def parse_state(data: Any, where: str) -> CloudState:
    """A CloudState from loaded JSON; errors name ``where`` and the field."""
    if not isinstance(data, dict):
        raise StateError(f"{where}: expected an object at the top")
    version = _get(data, "version", int, where)
    if version != STATE_VERSION:
        raise StateError(f"{where}: version: {version} is not {STATE_VERSION}")
    prefix = _get(data, "prefix", str, where)
    if not PREFIX_RE.match(prefix):
        raise StateError(f"{where}: prefix: {prefix!r} must match {PREFIX_RE.pattern}")
    state = CloudState(
        prefix=prefix,
        network_nodes=_get(data, "network_nodes", int, where),
        compute_nodes=_get(data, "compute_nodes", int, where),
        endpoint=_get(data, "endpoint", (str, type(None)), where),
    )
    try:
        check_counts(state.network_nodes, state.compute_nodes)
    except CloudError as exc:
        raise StateError(f"{where}: {exc}") from None
    for name, node in _get(data, "nodes", dict, where).items():
        at = f"{where}: nodes.{name}"
        record = _record(
            NodeRecord, node, at, {"name": str, "role": str, "namespace": str, "addresses": dict}
        )
        state.nodes[name] = record
    for index, proc in enumerate(_get(data, "processes", list, where)):
        at = f"{where}: processes[{index}]"
        kinds = {"role": str, "node": str, "pid": int, "start_time": int, "argv": list}
        record = _record(ProcessRecord, proc, at, kinds)
        if record.pid <= 1:
            raise StateError(f"{at}.pid: {record.pid} is not a process of the cloud")
        if not all(isinstance(arg, str) for arg in record.argv):
            raise StateError(f"{at}.argv: expected a list of strings")
        state.processes.append(
            ProcessRecord(
                record.role, record.node, record.pid, record.start_time, tuple(record.argv)
            )
        )
    for name, vm in _get(data, "vms", dict, where).items():
        kinds = {k: str for k in VmRecord.__dataclass_fields__}
        state.vms[name] = _record(VmRecord, vm, f"{where}: vms.{name}", kinds)
    crashed = _get(data, "crashed", list, where)
    if not all(isinstance(name, str) for name in crashed):
        raise StateError(f"{where}: crashed: expected a list of node names")
    state.crashed = list(crashed)
    state.with_agents = _get(data, "with_agents", bool, where)
    return state


def load_state(path: Path) -> CloudState:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StateError(f"{path}: no such file (is the cloud up?)") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    return parse_state(data, str(path))


def save_state(path: Path, state: CloudState) -> None:
    """Written whole or not at all: a crash mid-write leaves the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
