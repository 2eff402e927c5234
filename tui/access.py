"""Who may open the supervisor view: a live supervisor API key."""

from __future__ import annotations

from typing import Callable

from router.security import supervisor_key_checker
from router.settings import Settings


def supervisor_check(settings: Settings, store) -> Callable[[str], bool]:
    """A function telling whether a key is a live supervisor key (from `triage keys create --role supervisor`)."""
    return supervisor_key_checker(settings, store)
