"""create_app: the archive's FastAPI application (pages, JSON API, exports, feed), its token check and error pages."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from fastapi_offline import FastAPIOffline
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from monitor.config import Config, Settings
from monitor.embed import Embedder
from monitor.store.search import VectorIndex
from monitor.web import api, pages
from monitor.web.data import Archive
from monitor.web.present import install_filters

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TOKEN_COOKIE = "monitor_token"
MACHINE_PATHS = ("/api/", "/feed.atom", "/openapi.json")  # answered in JSON (errors too), never redirected


def create_app(
    *, sessions: sessionmaker[Session], embedder: Embedder, config: Config, settings: Settings, vectors: VectorIndex | None = None
) -> FastAPI:
    app = FastAPIOffline(  # /docs from files a package installs, not a CDN: it works without internet
        static_url="/static/docs",
        redoc_url=None,  # ReDoc would still fetch its logo from its CDN
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io either
        title="monitor archive",
        description=(
            "Search the stored stories by words, meaning, vendor, country, action, source and date. "
            "When MONITOR_API_TOKEN is set, send it as `Authorization: Bearer <token>` (or `?token=<token>`)."
        ),
        version="1",
    )
    app.state.archive = Archive(sessions, embedder, config, settings, vectors or VectorIndex())
    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    install_filters(environment, config)
    app.state.templates = Jinja2Templates(env=environment)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    _install_token_check(app, settings.api_token)
    _install_error_pages(app)
    return app


def _machine(request: Request) -> bool:
    return request.url.path.startswith(MACHINE_PATHS)


def _given_token(request: Request) -> tuple[str, str]:
    """The token a request carries and how: header, query or cookie."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip(), "header"
    if request.query_params.get("token"):
        return request.query_params["token"], "query"
    return request.cookies.get(TOKEN_COOKIE, ""), "cookie"


def _install_token_check(app: FastAPI, token: str) -> None:
    """With a token set, every path but /static needs it; a browser that brings it once in ?token= keeps it in a cookie."""
    if not token:
        return

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if request.url.path.startswith("/static/"):
            return await call_next(request)
        given, how = _given_token(request)
        if not (given and hmac.compare_digest(given.encode(), token.encode())):
            message = "this archive needs its token: send Authorization: Bearer <token>, or add ?token=<token> to the address"
            if given:
                message = "the token given is not this archive's token"
            if _machine(request):
                return JSONResponse({"detail": message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return _page(request, "token.html", {"message": message}, 401)
        if how == "query" and not _machine(request):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            response: Response = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), status_code=303)
            response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="lax")
            return response
        return await call_next(request)


def _readable(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"] if p not in ("query", "path")) or "request"
        given = error.get("input")
        shown = f" (got {given!r:.60})" if isinstance(given, (str, int)) and not isinstance(given, bool) else ""
        parts.append(f"{field}: {error['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(parts)


def _install_error_pages(app: FastAPI) -> None:
    """Errors read the same way everywhere: JSON {"detail": message} for the API, a page with the message for people."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        message = _readable(exc)
        if _machine(request):
            return JSONResponse({"detail": message, "errors": jsonable_encoder(exc.errors(), exclude={"ctx", "url"})}, status_code=422)
        return _page(request, "error.html", {"status": 422, "message": message}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else f"nothing at {request.url.path}"
        if _machine(request):
            return JSONResponse({"detail": message}, status_code=exc.status_code, headers=exc.headers)
        return _page(request, "error.html", {"status": exc.status_code, "message": message}, exc.status_code)


def _page(request: Request, template: str, context: dict, status: int) -> Response:
    return request.app.state.templates.TemplateResponse(request, template, context, status_code=status)
