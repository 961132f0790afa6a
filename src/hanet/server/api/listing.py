"""List queries as Neutron takes them: filters, fields, sorting and pagination. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hanet.server.api.errors import BadRequest
from hanet.server.api.validate import short

CONTROL = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"}


def _matches(value: Any, wanted: list[str]) -> bool:
    if isinstance(value, bool):
        return str(value).lower() in {w.lower() for w in wanted}
    if isinstance(value, list):  # e.g. fixed_ips=ip_address=10.0.0.5 or subnets=<id>
        return any(str(item) in wanted or _fixed_ip_match(item, wanted) for item in value)
    return ("" if value is None else str(value)) in wanted


def _fixed_ip_match(item: Any, wanted: list[str]) -> bool:
    if not isinstance(item, dict):
        return False
    return any(f"{k}={v}" in wanted for k, v in item.items())


def apply(
    rows: list[dict[str, Any]], query: Mapping[str, list[str]], path: str, collection: str
) -> dict[str, Any]:
    """The response body of a list request, ``{collection: [...], collection_links?}``."""
    known = set(rows[0]) if rows else set()
    for key, wanted in query.items():
        if key in CONTROL:
            continue
        if rows and key not in known:
            raise BadRequest(f"{short(key)} is not a valid filter for {collection}")
        rows = [r for r in rows if _matches(r.get(key), wanted)]
    sort_keys = query.get("sort_key", [])
    sort_dirs = query.get("sort_dir", [])
    if len(sort_dirs) > len(sort_keys):
        raise BadRequest("The number of sort_keys and sort_dirs must be same")
    for index in reversed(range(len(sort_keys))):
        key = sort_keys[index]
        direction = sort_dirs[index] if index < len(sort_dirs) else "asc"
        if direction not in ("asc", "desc"):
            raise BadRequest(f"{short(direction)} is not a valid sort direction")
        if rows and key not in known:
            raise BadRequest(f"{short(key)} is an invalid attribute for sort_keys")
        rows.sort(key=_sort_key(key), reverse=direction == "desc")
    body: dict[str, Any] = {}
    limit = _limit(query)
    if limit:
        rows, links = _page(rows, query, limit, path, collection)
        if links:
            body[f"{collection}_links"] = links
    fields = [f for f in query.get("fields", []) if f]
    if fields:
        rows = [{k: v for k, v in r.items() if k in fields} for r in rows]
    body[collection] = rows
    return body


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    def sort_key(row: dict[str, Any]) -> tuple[bool, str]:
        return row.get(key) is None, str(row.get(key))

    return sort_key


def _limit(query: Mapping[str, list[str]]) -> int:
    raw = query.get("limit", ["0"])[-1]
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(
            f"Invalid input for limit. Reason: '{short(raw)}' is not an integer."
        ) from None
    if limit < 0:
        raise BadRequest(f"Invalid input for limit. Reason: '{limit}' should be non-negative.")
    return limit


Page = tuple[list[dict[str, Any]], list[dict[str, str]]]


def _page(
    rows: list[dict[str, Any]],
    query: Mapping[str, list[str]],
    limit: int,
    path: str,
    collection: str,
) -> Page:
    ids = [r["id"] for r in rows]
    marker = query.get("marker", [None])[-1]
    reverse = query.get("page_reverse", ["false"])[-1].lower() == "true"
    if marker is not None and marker not in ids:
        raise BadRequest(f"marker {short(marker)} is not in the list", "MarkerNotFound")
    if not reverse:
        start = ids.index(marker) + 1 if marker is not None else 0
        page = rows[start : start + limit]
        more = start + limit < len(rows)
    else:
        end = ids.index(marker) if marker is not None else len(rows)
        page = rows[max(0, end - limit) : end]
        more = end - limit > 0
    links = []
    if page and more:
        links.append(
            {
                "rel": "next" if not reverse else "previous",
                "href": f"{path}?limit={limit}&marker={page[-1 if not reverse else 0]['id']}"
                + ("&page_reverse=True" if reverse else ""),
            }
        )
    if page and (marker is not None):
        links.append(
            {
                "rel": "previous" if not reverse else "next",
                "href": f"{path}?limit={limit}&marker={page[0 if not reverse else -1]['id']}"
                + ("" if reverse else "&page_reverse=True"),
            }
        )
    _ = collection
    return page, links
