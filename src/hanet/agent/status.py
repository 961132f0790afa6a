"""The agent's status file: what it runs and what it could not build, as one JSON object
written atomically after each change, for operators, ``hanet lab`` and the tests."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class StatusFile:
    def __init__(self, path: Path, host: str, mode: str) -> None:
        self.path, self.host, self.mode = path, host, mode

    def write(self, **fields: Any) -> None:
        data = {"host": self.host, "mode": self.mode, **fields, "updated_at": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(temporary, self.path)
