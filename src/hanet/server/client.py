"""A small JSON client of hanet-server, standard library only, so that the ``hanet``
command stays light (the daemons share its entry point)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    body: Any


class ApiClient:
    """Sends JSON, returns (status, parsed body); never raises for HTTP errors."""

    def __init__(self, url: str, token: str | None = None, project: str | None = None) -> None:
        self.url, self.headers = url, {"Content-Type": "application/json"}
        if token is not None:
            self.headers["X-Auth-Token"] = token
        if project is not None:
            self.headers["X-Project-Id"] = project

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        return Reply(status, json.loads(text) if text else None)

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Reply:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Reply:
        return self.request("DELETE", path)
