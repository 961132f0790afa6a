"""The Neutron v2.0 REST API subset: validation, errors and handlers."""
