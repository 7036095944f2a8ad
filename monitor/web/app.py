"""create_app: the archive's FastAPI application (pages, JSON API, exports, feed, health and metrics), its token check and error pages."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote_plus, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from fastapi_offline import FastAPIOffline
from jinja2 import Environment, FileSystemLoader
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from monitor.config import Settings
from monitor.domain import Embedder
from monitor.specs import Config
from monitor.store.search import VectorIndex
from monitor.domain import WEBSUB_PATH
from monitor.web import api, health, pages, websub
from monitor.web.data import Archive
from monitor.web.present import install_filters

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TOKEN_COOKIE = "monitor_token"
MACHINE_PATHS = ("/api/", "/feed.atom", "/openapi.json", WEBSUB_PATH, *health.OPEN_PATHS)  # answered in JSON (errors too), never redirected
SECRET_PARAMETERS = {"token"}
QUERY_PARAMETER = re.compile(r"([?&])([^=&#\s\"]*)=([^&#\s\"]*)")
# The pages load only their own CSS and script: no inline code, nothing from elsewhere, never in a frame.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Swagger UI (/docs, its files served from the package) starts itself with an inline script and draws with inline styles.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs",)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def redact_secrets(text: str) -> str:
    """An address or log line with the value of every secret query parameter (?token=…) replaced."""

    def hide(match: re.Match) -> str:
        secret = unquote_plus(match.group(2)).lower() in SECRET_PARAMETERS
        return f"{match.group(1)}{match.group(2)}={'[redacted]' if secret else match.group(3)}"

    return QUERY_PARAMETER.sub(hide, text)


class RedactSecrets(logging.Filter):
    """Keeps ?token=… out of the access log (uvicorn writes every request's address there with --verbose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_secrets(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


REDACT_SECRETS = RedactSecrets()
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SAME_SITE_FETCHES = ("same-origin", "none")  # Sec-Fetch-Site of a page's own request, or of one the user typed


def create_app(
    *,
    sessions: sessionmaker[Session],
    embedder: Embedder,
    config: Config,
    settings: Settings,
    vectors: VectorIndex | None = None,
    metrics: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = websub.utcnow,
) -> FastAPI:
    """The archive; /metrics serves the given registry (see monitor.metrics.store_registry); the clock dates readers' labels and what hubs send."""
    app = FastAPIOffline(  # /docs from files a package installs, not a CDN: it works without internet
        static_url="/static/docs",
        redoc_url=None,  # ReDoc would still fetch its logo from its CDN
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io either
        title="monitor archive",
        description=(
            "Search the stored stories by words, meaning, vendor, country, action, source and date. "
            "When MONITOR_API_TOKEN is set, send it as `Authorization: Bearer <token>` (or `?token=<token>`); "
            "/healthz, /readyz and /metrics never need it. POST /api/labels records a reader's verdict on a story or article."
        ),
        version="1",
    )
    # `is None`, not `or`: an index is falsy while empty, as `monitor serve`'s is until its warm-up has loaded it
    app.state.archive = Archive(sessions, embedder, config, settings, vectors if vectors is not None else VectorIndex(where=settings.vector_search))
    if clock is not None:
        app.state.archive.clock = clock
    app.state.metrics = metrics
    app.state.clock = clock
    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    install_filters(environment, config)
    app.state.templates = Jinja2Templates(env=environment)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(health.router)
    app.include_router(websub.router)
    _install_token_check(app, settings.api_token)
    _install_cross_site_check(app)
    _install_security_headers(app)
    _install_error_pages(app)
    for name in SERVER_LOGGERS:
        logging.getLogger(name).addFilter(REDACT_SECRETS)  # once: the same filter is never added twice
    return app


def _install_security_headers(app: FastAPI) -> None:
    """Every answer, errors and refusals of the token check included, carries the security headers and a strict CSP."""

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        docs = request.url.path.startswith(DOCS_PATHS)
        response.headers.update({**SECURITY_HEADERS, "Content-Security-Policy": DOCS_POLICY if docs else PAGE_POLICY})
        return response


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
    """With a token set, every path but /static, the health and metrics paths and the WebSub callback (hubs cannot send
    it; each push is signed instead) needs it; a browser that brings it once in ?token= keeps it in a cookie."""
    if not token:
        return

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if request.url.path.startswith(("/static/", WEBSUB_PATH)) or request.url.path in health.OPEN_PATHS:
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


def cross_site(request: Request) -> bool:
    """Whether a browser sent this request from another site's page: by its Sec-Fetch-Site, else by its Origin. A
    request with neither is no browser's (curl, a script): it carries only the credentials its sender chose to send.
    The rule of Go's net/http CrossOriginProtection, which needs no form token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() not in SAME_SITE_FETCHES
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def _install_cross_site_check(app: FastAPI) -> None:
    """Every request that changes something (a reader's label) is refused when another site's page sends it: a page
    elsewhere cannot label stories with the archive reader's cookie, nor in an archive open without a token."""

    @app.middleware("http")
    async def refuse_cross_site(request: Request, call_next):
        if request.method in SAFE_METHODS or not cross_site(request):
            return await call_next(request)
        message = "refused: a request that changes the archive must come from the archive's own pages"
        if _machine(request):
            return JSONResponse({"detail": message}, status_code=403)
        return _page(request, "error.html", {"status": 403, "message": message}, 403)


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
