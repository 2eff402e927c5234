"""Who may open the supervisor view: a supervisor API key, once the product has keys."""

from __future__ import annotations

import importlib
from typing import Callable

from router.settings import Settings


def supervisor_check(settings: Settings, store) -> Callable[[str], bool] | None:
    """A function telling whether a key is a valid supervisor key; None when the product has no key system yet."""
    try:
        security = importlib.import_module("router.security")
    except ModuleNotFoundError as exc:
        if exc.name != "router.security":
            raise
        return None
    return security.supervisor_key_checker(settings, store)
