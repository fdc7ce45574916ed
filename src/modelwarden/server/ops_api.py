"""Operations: health, Prometheus metrics, and the gateway's route table."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from modelwarden.gateway.metrics import CONTENT_TYPE
from modelwarden.governance import service as governance
from modelwarden.governance.keys import ApiKey
from modelwarden.governance.registry import key_actor
from modelwarden.governance.routes import PutRoutes, RouteSpec, RouteTable
from modelwarden.server.body import read_json
from modelwarden.server.deps import requires, runtime_of
from modelwarden.server.errors import InvalidBody, error_responses

router = APIRouter()


@router.get("/healthz", tags=["operations"], summary="Liveness and the spool's backlog")
async def healthz(request: Request) -> dict[str, Any]:
    return runtime_of(request).health()


@router.get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    return Response(runtime_of(request).metrics.render(), media_type=CONTENT_TYPE)


@router.get(
    "/v1/routes",
    tags=["routes"],
    responses=error_responses(404, 422),
    summary="The live route table, or its history",
)
def get_routes(
    request: Request,
    history: bool = Query(False, description="Every version, newest first"),
    limit: int = Query(50, ge=1, le=1000),
) -> Any:
    rt = runtime_of(request)
    if history:
        return governance.routes_history(rt.state, limit)
    table = rt.routes.get()
    if table is None:
        return JSONResponse(
            {
                "error": {
                    "code": "not_found",
                    "message": "no routes are set; PUT /v1/routes or modelwarden routes set",
                }
            },
            status_code=404,
        )
    return table.to_dict()


@router.put(
    "/v1/routes",
    tags=["routes"],
    response_model=RouteTable,
    responses=error_responses(400, 401, 403, 409, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PutRoutes"}}},
        }
    },
    summary="Replace the route table (a new version; what is left out is off); 409 if it "
    "names a quarantined version",
)
async def put_routes(request: Request, key: ApiKey | None = Depends(requires("routes"))) -> Any:
    rt = runtime_of(request)
    body = await read_json(request, rt.config.max_body_bytes)
    try:
        spec = PutRoutes.model_validate(body)
    except ValidationError as exc:
        raise InvalidBody.from_validation(exc) from None
    actor = key_actor(key) if key is not None else "api"
    table = await run_in_threadpool(
        governance.set_routes,
        rt.state,
        RouteSpec.model_validate(spec.model_dump(exclude={"if_version"})),
        actor,
        spec.note or "",
        spec.if_version,
    )
    rt.routes.invalidate()
    return table
