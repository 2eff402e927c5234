"""Routing without storing: one strategy (/v1/route) or all side by side (/v1/compare)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from router.api.deps import CoreDep, caller_dep
from router.api.schemas import CompareOut, CompareRequest, RouteRequest, RoutingOut

router = APIRouter(prefix="/v1", tags=["routing"])


@router.post("/route", response_model=RoutingOut, summary="Route a complaint; nothing is stored")
def route(body: RouteRequest, core: CoreDep, _caller: caller_dep("route")) -> RoutingOut:
    result = core.route(body.text, body.strategy, shots=body.shots, rag=body.rag, precedents=body.precedents,
                           model=body.model)
    return RoutingOut.of(result)


@router.post("/compare", response_model=CompareOut, summary="Every strategy on one complaint, side by side")
def compare(body: CompareRequest, core: CoreDep, _caller: caller_dep("compare")) -> CompareOut:
    return CompareOut(strategies=[RoutingOut.of(r) for r in core.compare(body.text, shots=body.shots, rag=body.rag)])


@router.get("/compare", response_model=CompareOut, summary="Every strategy on one complaint, side by side")
def compare_get(core: CoreDep, _caller: caller_dep("compare"),
                text: Annotated[str, Query(description="The complaint.")],
                rag: Annotated[bool, Query()] = False) -> CompareOut:
    return CompareOut(strategies=[RoutingOut.of(r) for r in core.compare(text, rag=rag)])
