"""The seven departments of the routing policy, in canonical order."""

from __future__ import annotations

from collections.abc import Iterable

DEPARTMENTS: tuple[str, ...] = ("Planning", "Development", "Service", "Warehouse", "L3", "Packaging", "Marketing")
_BY_LOWER = {name.lower(): name for name in DEPARTMENTS}

INSTRUCTION = (
    "Classify the following complaint and determine which departments to route the complaint: "
    "Planning, Development, Service, Warehouse, L3, Packaging, and Marketing."
)


class LabelError(ValueError):
    """A department list that is not valid under the policy."""


def canonical(departments: Iterable[str]) -> list[str]:
    """Deduplicate and order department names the way the policy prints them."""
    chosen = set(departments)
    unknown = chosen - set(DEPARTMENTS)
    if unknown:
        raise LabelError(f"unknown department(s): {', '.join(sorted(unknown))}; allowed: {', '.join(DEPARTMENTS)}")
    return [name for name in DEPARTMENTS if name in chosen]


def parse_departments(text: str, *, strict: bool = True) -> list[str]:
    """Parse 'Warehouse, Packaging' into a canonical list.

    strict: names must be spelled exactly; otherwise case is forgiven.
    """
    if not isinstance(text, str) or not text.strip():
        raise LabelError("empty department list")
    names = [part.strip() for part in text.split(",")]
    if any(not name for name in names):
        raise LabelError(f"empty name in department list {text!r}")
    resolved = []
    for name in names:
        if name in DEPARTMENTS:
            resolved.append(name)
        elif not strict and name.lower() in _BY_LOWER:
            resolved.append(_BY_LOWER[name.lower()])
        else:
            hint = _BY_LOWER.get(name.lower())
            extra = f" (did you mean {hint!r}?)" if hint else ""
            raise LabelError(f"unknown department {name!r}{extra}; allowed: {', '.join(DEPARTMENTS)}")
    if len(set(resolved)) != len(resolved):
        raise LabelError(f"department repeated in {text!r}")
    return canonical(resolved)


def format_departments(departments: Iterable[str]) -> str:
    return ", ".join(canonical(departments))
