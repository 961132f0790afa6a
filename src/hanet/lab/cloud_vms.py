"""VMs of the lab cloud: what Nova does for an instance on the linuxbridge agent, in small.

A VM is a namespace ``{prefix}-vm-{name}`` whose ``eth0`` is one end of a veth pair; the
other end, ``tap<port id[:11]>``, is in the compute node's namespace for the node's agent to
put on the network's bridge. Its port is made through the API first (``binding:host_id``
the compute node, ``device_owner`` ``compute:nova``, ``device_id`` the VM's uuid, ``name``
the VM's), and the VM's address, MTU and default route come from that port, its network and
its IPv4 subnet, as DHCP would hand them out.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import TYPE_CHECKING, Any

from hanet.lab import cloud_nodes as nodes
from hanet.lab.cloud_state import CloudError, VmRecord, check_vm_name
from hanet.lab.daemons import WaitTimeout, wait_until

if TYPE_CHECKING:
    from hanet.lab.cloud import Cloud

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def vm_namespace(prefix: str, name: str) -> str:
    return f"{prefix}-vm-{name}"


def tap_name(port_id: str) -> str:
    """As Nova names it (nova.network.model.NIC_NAME_LEN): 14 characters."""
    return f"tap{port_id[:11]}"


def find_network(cloud: Cloud, network: str) -> dict[str, Any]:
    """A network by id or by (unique) name."""
    api = cloud.client()
    if UUID_RE.match(network):
        reply = api.get(f"/v2.0/networks/{network}")
        if reply.status == 200:
            return dict(reply.body["network"])
    reply = api.get(f"/v2.0/networks?name={network}")
    if reply.status != 200:
        raise CloudError(f"looking up network {network!r}: {reply.status} {reply.body}")
    found = reply.body["networks"]
    if not found:
        raise CloudError(f"no network {network!r} (by name or id)")
    if len(found) > 1:
        ids = ", ".join(n["id"] for n in found)
        raise CloudError(f"{len(found)} networks are named {network!r} ({ids}): give the id")
    return dict(found[0])


def _ipv4_subnets(cloud: Cloud, network: dict[str, Any]) -> dict[str, dict[str, Any]]:
    reply = cloud.client().get(f"/v2.0/subnets?network_id={network['id']}")
    if reply.status != 200:
        raise CloudError(f"listing subnets of {network['name']}: {reply.status} {reply.body}")
    subnets = {s["id"]: s for s in reply.body["subnets"] if s["ip_version"] == 4}
    if not subnets:
        raise CloudError(f"network {network['name'] or network['id']} has no IPv4 subnet")
    return subnets


def create(cloud: Cloud, name: str, network_ref: str, host: str, timeout: float) -> VmRecord:
    check_vm_name(name)
    if host not in cloud.compute_nodes:
        raise CloudError(
            f"--host {host!r}: not a compute node of cloud {cloud.prefix} "
            f"({', '.join(cloud.compute_nodes) or 'none'})"
        )
    with cloud._locked():
        cloud._reload()
        if name in cloud.state.vms:
            raise CloudError(f"VM {name!r} exists already in cloud {cloud.prefix}")
        network = find_network(cloud, network_ref)
        subnets = _ipv4_subnets(cloud, network)
        vm = _make(cloud, name, network, subnets, host)
    try:
        _wait_plugged(cloud, vm, timeout)
    except BaseException:
        delete(cloud, name)
        raise
    return vm


def _make(
    cloud: Cloud, name: str, network: dict[str, Any], subnets: dict[str, dict[str, Any]], host: str
) -> VmRecord:
    body = {
        "port": {
            "network_id": network["id"],
            "name": name,
            "device_owner": "compute:nova",
            "device_id": str(uuid.uuid4()),
            "binding:host_id": host,
        }
    }
    reply = cloud.client().post("/v2.0/ports", body)
    if reply.status != 201:
        raise CloudError(f"creating the port of VM {name}: {reply.status} {reply.body}")
    port = reply.body["port"]
    fixed = next((f for f in port["fixed_ips"] if f["subnet_id"] in subnets), None)
    if fixed is None:
        cloud.client().delete(f"/v2.0/ports/{port['id']}")
        raise CloudError(f"the port of VM {name} got no IPv4 address on {network['name']}")
    subnet = subnets[fixed["subnet_id"]]
    prefixlen = ipaddress.ip_network(subnet["cidr"]).prefixlen
    address = ipaddress.IPv4Interface(f"{fixed['ip_address']}/{prefixlen}")
    vm = VmRecord(
        name=name,
        host=host,
        namespace=vm_namespace(cloud.prefix, name),
        network_id=network["id"],
        port_id=port["id"],
        device_id=port["device_id"],
        mac_address=port["mac_address"],
        address=str(address),
        tap=tap_name(port["id"]),
    )
    # Recorded before anything is made, so that vm delete and cloud down find all of it.
    cloud.state.vms[name] = vm
    cloud._save()
    try:
        nodes.create_namespace(vm.namespace)
        nodes.plug_vm(
            vm.namespace,
            cloud.lab.ns(host),
            vm.tap,
            vm.mac_address,
            int(network.get("mtu") or 1500),
            address,
            subnet.get("gateway_ip"),
        )
    except BaseException:
        _unmake(cloud, vm)
        raise
    return vm


def _wait_plugged(cloud: Cloud, vm: VmRecord, timeout: float) -> None:
    node_ns = cloud.lab.ns(vm.host)

    def plugged() -> bool:
        master = nodes.tap_master(node_ns, vm.tap)
        return master is not None and master.startswith("brq")

    try:
        wait_until(plugged, timeout, f"{vm.host}'s agent to put {vm.tap} on a bridge", step=0.1)
    except WaitTimeout as exc:
        seen = cloud.agent_status(vm.host).get("ports", {}).get(vm.port_id, "not in its status")
        log = cloud.paths.log(vm.host, "agent")
        raise CloudError(
            f"VM {vm.name}: {exc} (the agent's status of port {vm.port_id}: "
            f"{seen}); {log}:\n{nodes.tail(log)}"
        ) from None


def _unmake(cloud: Cloud, vm: VmRecord) -> None:
    nodes.kill_in([vm.namespace])
    nodes.remove_namespaces([vm.namespace])  # its eth0 goes, and the tap with it
    reply = cloud.client().delete(f"/v2.0/ports/{vm.port_id}")
    if reply.status not in (204, 404):
        raise CloudError(f"deleting port {vm.port_id} of VM {vm.name}: {reply.status} {reply.body}")
    cloud.state.vms.pop(vm.name, None)
    cloud._save()


def delete(cloud: Cloud, name: str) -> None:
    """The VM's namespace (and so its tap) and its port go."""
    with cloud._locked():
        cloud._reload()
        vm = cloud.state.vms.get(name)
        if vm is None:
            raise CloudError(f"no VM {name!r} in cloud {cloud.prefix}")
        _unmake(cloud, vm)
