"""hanet-server: the control plane (a Neutron v2.0 API subset, an SQL store, scheduling)."""
