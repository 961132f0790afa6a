"""The hanet command line."""
