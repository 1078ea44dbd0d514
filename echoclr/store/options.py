"""``key=value`` storage options from the command line → fsspec keyword arguments."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_storage_options(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings into fsspec storage options.

    Values are read as JSON when they parse (``anon=true``, ``retries=3``) and kept as text otherwise; a dotted key
    nests (``client_kwargs.region_name=eu-west-1`` → ``{"client_kwargs": {"region_name": "eu-west-1"}}``).

    Raises:
        ValueError: an item without ``=`` or with an empty key, naming the item.
    """
    options: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--storage-option {item!r} is not key=value (e.g. endpoint_url=http://127.0.0.1:9000)")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.strip().split(".")
        target = options
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ValueError(f"--storage-option {item!r}: {parent!r} is already set to a value")
        target[leaf] = value
    return options
