"""pytest fixtures for the lab."""
