"""keepalived.conf: reading the VRRP part of keepalived's configuration language.

tokens.py and syntax.py are pure (text to tokens to a tree of statements); loader.py reads
files and resolves ``include``; sections.py checks the tree against keyword tables and builds
the model of model.py, collecting every problem with its file, line and column.
"""
