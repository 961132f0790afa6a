"""Network segments: which L2 segment each network is (Neutron's provider extension and
ML2 type drivers, for the types the linuxbridge layout builds).

Tenant networks and HA networks are VXLAN, with a VNI drawn from ``vni_ranges`` (Neutron's
``[ml2_type_vxlan] vni_ranges``); flat and VLAN networks are what an admin gave. Every
segment in use is a row of ``network_segments`` keyed by (type, physical network, id), so
the database, not a Python check, keeps two networks off one segment, with concurrent
requests and several servers alike. The row goes with its network (ON DELETE CASCADE), so
a deleted network's VNI is free again.

Unlike ML2, which writes a row for every VNI of the range when it starts, only the VNIs in
use are stored: the range's size costs nothing.
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hanet.server.api.errors import Conflict, InvalidInput, ServiceUnavailable
from hanet.server.models import Network, NetworkSegment

log = logging.getLogger(__name__)

FLAT, VLAN, VXLAN = "flat", "vlan", "vxlan"
TYPES = (FLAT, VLAN, VXLAN)
MAX_VNI = 2**24 - 1  # the VXLAN header's 24-bit VNI (RFC 7348 §5)
MAX_VLAN = 4094  # 802.1Q; 0 and 4095 are reserved
# Neutron's VXLAN_ENCAP_OVERHEAD (30: outer Ethernet, UDP, VXLAN) plus an IPv4 header.
VXLAN_OVERHEAD = 50
DEFAULT_VNI_RANGES = [f"1:{MAX_VNI}"]
RETRIES = 20  # draws when another request takes the same VNI
SMALL_RANGE = 4096  # up to this many VNIs, draw among the free ones; above, draw blindly
BLIND_DRAWS = 3  # blind draws in a big range before looking for the first free VNI
NO_PHYSNET, NO_ID = "", 0  # in the key: NULL would make SQL's uniqueness ignore the row


def parse_vni_ranges(raw: Any) -> tuple[tuple[int, int], ...]:
    """``"1:1000,2000:2500"`` or ``["1:1000", "2000:2500"]`` as ((1, 1000), (2000, 2500));
    ValueError saying what is wrong."""
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list | tuple) or not raw:
        raise ValueError("expected MIN:MAX ranges, e.g. ['1:1000']")
    ranges = []
    for item in raw:
        first, sep, last = str(item).strip().partition(":")
        try:
            pair = (int(first), int(last))
        except ValueError:
            pair = (0, -1)
        if not sep or not 1 <= pair[0] <= pair[1] <= MAX_VNI:
            raise ValueError(f"'{item}' is not MIN:MAX with 1 <= MIN <= MAX <= {MAX_VNI}")
        ranges.append(pair)
    ranges.sort()
    for (_, end), (start, _) in itertools.pairwise(ranges):
        if start <= end:
            raise ValueError(f"ranges overlap at {start}")
    return tuple(ranges)


@dataclass(frozen=True)
class Segment:
    network_type: str
    physical_network: str | None
    segmentation_id: int | None  # None for a VXLAN network whose VNI is still to draw


def requested(values: dict[str, Any]) -> Segment | None:
    """The segment an admin asked for with the provider attributes (None: none asked, so
    a VXLAN network from the range), checked as ML2's type drivers check it."""
    network_type = values.get("provider:network_type")
    physnet = values.get("provider:physical_network")
    seg_id = values.get("provider:segmentation_id")
    if network_type is None:
        if physnet is not None or seg_id is not None:
            raise InvalidInput("provider:network_type", "network_type required")
        return None
    if network_type not in TYPES:
        raise InvalidInput(
            "provider:network_type", f"network_type value '{network_type}' not supported"
        )
    if network_type == VXLAN:
        if physnet is not None:
            raise InvalidInput(
                "provider:physical_network", "provider:physical_network specified for vxlan network"
            )
        return Segment(VXLAN, None, seg_id)
    if not physnet:
        raise InvalidInput(
            "provider:physical_network", f"physical_network required for {network_type} network"
        )
    if network_type == FLAT:
        if seg_id is not None:
            raise InvalidInput(
                "provider:segmentation_id", "segmentation_id prohibited for flat provider network"
            )
        return Segment(FLAT, physnet, None)
    if seg_id is None or not 1 <= seg_id <= MAX_VLAN:
        reason = "segmentation_id required" if seg_id is None else "segmentation_id out of range"
        raise InvalidInput(
            "provider:segmentation_id", f"{reason} for VLAN network (1 through {MAX_VLAN})"
        )
    return Segment(VLAN, physnet, seg_id)


def wiring(network: Network | None) -> dict[str, Any]:
    """What an agent needs to plug a port into its network's segment."""
    if network is None:
        return dict.fromkeys(("network_type", "physical_network", "segmentation_id", "mtu"))
    return {
        "network_type": network.network_type,
        "physical_network": network.physical_network,
        "segmentation_id": network.segmentation_id,
        "mtu": network.mtu,
    }


class Segments:
    """The segment allocator, composed into the store (``store.segments``)."""

    def __init__(
        self, vni_ranges: Any = tuple(DEFAULT_VNI_RANGES), physnet_mtu: int = 1500
    ) -> None:
        self.vni_ranges = parse_vni_ranges(vni_ranges)
        self.size = sum(high - low + 1 for low, high in self.vni_ranges)
        self.physnet_mtu = physnet_mtu

    # Checks (before anything is written) ------------------------------------------------

    def max_mtu(self, network_type: str | None) -> int:
        return self.physnet_mtu - (VXLAN_OVERHEAD if network_type in (VXLAN, None) else 0)

    def check_mtu(self, network_type: str | None, mtu: int) -> None:
        if mtu > self.max_mtu(network_type):
            raise InvalidInput(
                "mtu", f"Requested MTU is too big, maximum is {self.max_mtu(network_type)}"
            )

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        """A new network's segment and MTU columns from the request (the MTU defaults to
        the most the segment carries, as Neutron's does); the VNI, if any, is drawn by
        record() once the network row exists."""
        segment = requested(values) or Segment(VXLAN, None, None)
        mtu = values.get("mtu")
        if mtu is None:
            mtu = self.max_mtu(segment.network_type)
        self.check_mtu(segment.network_type, mtu)
        return {
            "network_type": segment.network_type,
            "physical_network": segment.physical_network,
            "segmentation_id": segment.segmentation_id,
            "mtu": mtu,
        }

    # Writes (in the caller's transaction) -----------------------------------------------

    def record(self, session: Session, network: Network) -> None:
        """Take the flushed ``network``'s segment, drawing a VNI when it has none yet.
        Conflict (409) when an admin's segment is taken, ServiceUnavailable (503) when the
        range is exhausted, as Neutron's TunnelIdInUse / NoNetworkAvailable."""
        if network.network_type == VXLAN and network.segmentation_id is None:
            network.segmentation_id = self._draw_vni(session, network)
            return
        if not self._take(session, network, network.segmentation_id or NO_ID):
            raise _in_use(network)

    def _take(self, session: Session, network: Network, seg_id: int) -> bool:
        row = NetworkSegment(
            network_type=network.network_type,
            physical_network=network.physical_network or NO_PHYSNET,
            segmentation_id=seg_id,
            network_id=network.id,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
            return True
        except IntegrityError:
            return False

    def _draw_vni(self, session: Session, network: Network) -> int:
        for attempt in range(RETRIES):
            vni = self._candidate(session, attempt)
            if self._take(session, network, vni):
                return vni
        raise _exhausted()

    def _candidate(self, session: Session, attempt: int) -> int:
        if self.size > SMALL_RANGE and attempt < BLIND_DRAWS:
            # Most of a big range is free: a random VNI is almost always free, and the
            # key settles it when not, without reading what is used.
            position = random.randrange(self.size)
            for low, high in self.vni_ranges:
                if position <= high - low:
                    return low + position
                position -= high - low + 1
        lowest, highest = self.vni_ranges[0][0], self.vni_ranges[-1][1]
        used = set(
            session.scalars(
                select(NetworkSegment.segmentation_id).where(
                    NetworkSegment.network_type == VXLAN,
                    NetworkSegment.physical_network == NO_PHYSNET,
                    NetworkSegment.segmentation_id.between(lowest, highest),
                )
            )
        )
        if self.size <= SMALL_RANGE:
            # Random among the free ones, so that concurrent requests rarely collide.
            every = (v for low, high in self.vni_ranges for v in range(low, high + 1))
            free = [v for v in every if v not in used]
            if free:
                return random.choice(free)
            raise _exhausted()
        for low, high in self.vni_ranges:
            for vni in range(low, high + 1):  # stops at the first free: O(used)
                if vni not in used:
                    return vni
        raise _exhausted()

    # Networks made before segments ------------------------------------------------------

    def adopt(self, writes: sessionmaker[Session]) -> int:
        """Give a segment row to each network that has none (made before segments
        existed): a VNI for those without a type, the admin's segment for the others.
        Each in its own transaction; returns how many were adopted."""
        with writes() as session:
            missing = list(
                session.scalars(
                    select(Network.id).where(
                        ~exists().where(NetworkSegment.network_id == Network.id)
                    )
                )
            )
        adopted = 0
        for network_id in missing:
            try:
                with writes.begin() as session:
                    network = session.get(Network, network_id)
                    taken = exists().where(NetworkSegment.network_id == network_id)
                    if network is None or session.scalar(select(taken)):
                        continue  # gone, or another server adopted it first
                    if network.network_type is None:
                        network.network_type = VXLAN
                        network.physical_network = network.segmentation_id = None
                    self.record(session, network)
                    adopted += 1
            except (Conflict, ServiceUnavailable) as exc:
                log.warning("network %s keeps no segment: %s", network_id, exc)
            except IntegrityError:
                pass  # another server adopted it first
        if adopted:
            log.info("gave segments to %d networks made before segments existed", adopted)
        return adopted


def _exhausted() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Unable to create the network. No tenant network is available for allocation.",
        "NoNetworkAvailable",
    )


def _in_use(network: Network) -> Conflict:
    if network.network_type == FLAT:
        return Conflict(
            f"Unable to create the flat network. Physical network "
            f"{network.physical_network} is in use.",
            "FlatNetworkInUse",
        )
    if network.network_type == VLAN:
        return Conflict(
            f"Unable to create the network. The VLAN {network.segmentation_id} on physical "
            f"network {network.physical_network} is in use.",
            "VlanIdInUse",
        )
    return Conflict(
        f"Unable to create the network. The tunnel ID {network.segmentation_id} is in use.",
        "TunnelIdInUse",
    )
