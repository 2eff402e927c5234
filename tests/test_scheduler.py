"""Concurrent routing requests share forward passes, and one bad request never fails its neighbours."""

from __future__ import annotations

import threading
import time

import pytest

from router.application.scheduler import RequestScheduler
from router.service import InputError
from test_api_helpers import tiny_artifact  # noqa: F401 - fixture


def spy(service, monkeypatch, *, slow_first: float = 0.0, poison: str | None = None) -> list[int]:
    sizes: list[int] = []
    real = service.route_many

    def route_many(texts, strategy=None, **options):
        sizes.append(len(texts))
        if slow_first and len(sizes) == 1:
            time.sleep(slow_first)  # the model is busy: the others queue up meanwhile
        if poison is not None and poison in texts:
            raise RuntimeError("poisoned batch")
        return real(texts, strategy, **options)

    monkeypatch.setattr(service, "route_many", route_many)
    return sizes


def run_concurrently(fn, args_list):
    out: dict[int, object] = {}

    def call(i, args):
        try:
            out[i] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - returned for the assertions
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join()
    return [out[i] for i in range(len(args_list))]


def test_queued_requests_are_routed_in_one_batch(tiny_service, monkeypatch):
    texts = [f"complaint {i} about a dented lamp" for i in range(8)]
    alone = [tiny_service.route(t) for t in texts]
    sizes = spy(tiny_service, monkeypatch, slow_first=0.4)
    group = RequestScheduler(tiny_service)
    results = run_concurrently(group.route, [(t,) for t in texts])
    assert sizes[0] == 1 and sum(sizes) == 8 and len(sizes) < 8, sizes
    assert [r.departments for r in results] == [r.departments for r in alone]


def test_different_options_are_not_mixed(tiny_service, monkeypatch):
    sizes = spy(tiny_service, monkeypatch, slow_first=0.3)
    group = RequestScheduler(tiny_service)
    calls = [("a complaint", "tuned"), ("b complaint", "zero-shot"), ("c complaint", "tuned"), ("d complaint", "zero-shot")]
    results = run_concurrently(group.route, calls)
    assert [r.strategy for r in results] == ["tuned", "zero-shot", "tuned", "zero-shot"]
    assert sum(sizes) == 4


def test_a_failing_request_does_not_fail_its_batch(tiny_service, monkeypatch):
    spy(tiny_service, monkeypatch, slow_first=0.3, poison="poison")
    group = RequestScheduler(tiny_service)
    results = run_concurrently(group.route, [("first",), ("fine one",), ("poison",), ("fine two",)])
    assert isinstance(results[2], RuntimeError)
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 2)
    with pytest.raises(InputError):
        group.route("   ")

