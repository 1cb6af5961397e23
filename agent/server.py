"""The HTTP service: FastAPI over one ``Recommender`` loaded once per process.

Endpoints: ``POST /recommend`` (a ``RecommendRequest``), ``GET /similar/{item_id}``,
``POST /feedback``, ``POST /chat``, ``GET /health``, the OpenAPI UI at ``/docs`` and the chat
page at ``/``. Bad requests get a 4xx with a readable message (unknown ids 404, validation
422), never a traceback; anything unexpected is a 500 with a generic, redacted message.

Run it with ``mtrec serve -w WORKSPACE``; with ``--workers N`` uvicorn imports
``agent.server:app_factory`` in each worker, which reads the workspace from
``$MTREC_SERVE_WORKSPACE`` and loads the model once per worker.

Access (``agent.access``): with API keys configured every route but the chat page, the
OpenAPI docs and a bare liveness ``/health`` needs ``Authorization: Bearer KEY`` with the
route's scope (``read`` or ``feedback``); a key bound to a user acts for that user only; each
key has a rate limit (429 with ``Retry-After``). Bodies are capped (413), and cross-origin
browser calls are refused unless ``--cors-origin`` names the origin. Without keys the service
is open, which ``serve`` allows on loopback addresses only (or with ``--insecure``).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.access import AccessPolicy, ApiKey, is_loopback, retry_after
from agent.chat import ChatEngine, ChatReply, SessionState
from agent.errors import (
    ConfigFileError,
    FeedbackStoreError,
    UsageError,
    WorkspaceError,
    redact,
    user_facing,
)
from agent.recommender import Recommender
from agent.schema import Feedback, RecommendRequest, RecommendResult, TierChoice, tier_choice

#: The workspace of ``app_factory`` (set by ``mtrec serve`` for its workers).
ENV_WORKSPACE = "MTREC_SERVE_WORKSPACE"
#: The chat page.
CHAT_PAGE = Path(__file__).parent / "static" / "chat.html"
SESSION_ID = r"^[A-Za-z0-9_.:\-]{1,100}$"

log = logging.getLogger("mtrec.server")


# ---- bodies -----------------------------------------------------------------------------------
class FeedbackRequest(BaseModel):
    """A rating of one item. ``session_id`` also applies it to that chat session (and answers
    with the session's updated list); without a user id the rating stays in the session."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=200)
    event: Feedback
    session_id: str | None = Field(default=None, pattern=SESSION_ID)
    state: SessionState | None = Field(default=None, description="Echoed chat state.")
    k: int | None = Field(default=None, ge=1, le=50)
    event_id: str | None = Field(
        default=None,
        pattern=SESSION_ID,
        description="The client's id for this event: a retry with the same id is stored once.",
    )


class FeedbackResponse(BaseModel):
    ok: bool = True
    id: int | None = Field(default=None, description="Row id in the feedback store.")
    backend: str | None = Field(
        default=None, description="The feedback store that holds it: sqlite or postgresql."
    )
    user_id: str | None = None
    item_id: str
    event: Feedback
    stored: bool = Field(description="Durably written to the workspace's feedback store.")
    history_size: int | None = None
    chat: ChatReply | None = None


class ChatRequest(BaseModel):
    """One chat message. ``state`` (from the previous reply) lets any server process continue
    the conversation; the process that holds the session in memory ignores it."""

    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(pattern=SESSION_ID)
    user_id: str | None = Field(default=None, min_length=1, max_length=200)
    message: str = Field(max_length=4000)
    k: int | None = Field(default=None, ge=1, le=50)
    llm: TierChoice | None = None
    state: SessionState | None = None


class Health(BaseModel):
    """Liveness for anyone; the details for a ``read`` key (or on an open server)."""

    status: str
    auth: str = Field(description="open, or keys (requests need an API key).")
    workspace: str | None = None
    items: int | None = None
    users: int | None = None
    model: str | None = None
    feedback_store: bool | None = None
    feedback_backend: str | None = None
    pid: int | None = None
    words: dict[str, str] = Field(
        default_factory=dict, description="What the catalog calls its items and categories."
    )


# ---- the app ----------------------------------------------------------------------------------
def create_app(
    workspace: str | Path | None = None,
    rec: Recommender | None = None,
    llm: TierChoice | None = None,
    warm_up: bool = True,
    access: AccessPolicy | None = None,
) -> FastAPI:
    """The FastAPI app. The recommender is loaded at startup unless ``rec`` is given.

    Args:
        workspace: Workspace directory (default ``$MTREC_WORKSPACE``).
        rec: An already loaded ``Recommender`` (shared by all requests).
        llm: Tier used when a request names none (default: the settings' ``llm``).
        warm_up: Open the index and run one request at startup, so the first client does not
            wait for the embedder to load.
        access: Keys, rate limits, body cap and CORS origins (default: open, no CORS).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.rec is None:
            app.state.rec = await run_in_threadpool(_load, workspace)
        r = app.state.rec
        if llm is not None:
            r.settings.llm = llm
        app.state.chat = ChatEngine(r, llm=r.settings.llm)
        _limit_request_threads()
        if warm_up:
            await run_in_threadpool(_warm_up, r)
        yield

    app = FastAPI(
        title="mtrec",
        version="0.1.0",
        summary="Multi-task recommendations with LLM reranking and grounded explanations.",
        lifespan=lifespan,
    )
    app.state.rec = rec
    app.state.access = access = access or AccessPolicy()
    _install_error_handlers(app)
    app.include_router(router)
    if access.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(access.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(BodyLimit, max_body=access.max_body)
    return app


# ---- access -----------------------------------------------------------------------------------
def authorize(request: Request, scope: str) -> ApiKey | None:
    """The request's key, checked for ``scope`` and its rate limit (None on an open server).

    Raises:
        HTTPException: 401 (no or unknown key), 429 (rate limit), 403 (scope). The messages
            never contain the presented token.
    """
    policy: AccessPolicy = request.app.state.access
    if not policy.required:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            401,
            "this server needs an API key: send the header Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = policy.match(token)
    if key is None:
        raise HTTPException(
            401, "invalid API key", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    wait = policy.take(key)
    if wait > 0:
        after = retry_after(wait)
        raise HTTPException(
            429,
            f"rate limit of key {key.name!r} reached; retry in {after} s",
            headers={"Retry-After": after},
        )
    if scope not in key.scopes:
        raise HTTPException(403, f"key {key.name!r} does not have the {scope!r} scope")
    return key


def need(scope: str) -> Any:
    """A route dependency: the request's key must have ``scope``."""

    def check(request: Request) -> ApiKey | None:
        return authorize(request, scope)

    return Depends(check)


#: Route dependencies: the request's key (None on an open server), checked for a scope.
READ = need("read")
FEEDBACK = need("feedback")


def act_for(key: ApiKey | None, *user_ids: str | None) -> None:
    """A key bound to a user may name no other user.

    Raises:
        HTTPException: 403 when it does.
    """
    if key is None or key.user is None:
        return
    for u in user_ids:
        if u is not None and u != key.user:
            raise HTTPException(403, f"key {key.name!r} acts for one user only, not {u!r}")


def _session_id(key: ApiKey | None, session_id: str) -> str:
    """Chat sessions are kept apart per key: one key cannot continue another's session."""
    return session_id if key is None else f"{key.name}~{session_id}"


class BodyLimit:
    """Answers 413 to a request body over ``max_body`` bytes (declared or streamed)."""

    def __init__(self, app: Any, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body over {self.max_body} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = False
                if too_big:
                    await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)


# ---- the routes ---------------------------------------------------------------------------------
router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def chat_page() -> HTMLResponse:
    return HTMLResponse(
        CHAT_PAGE.read_text(encoding="utf-8"),
        headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/health", response_model=Health, response_model_exclude_none=True, tags=["service"])
def health(request: Request) -> Health:
    """Liveness for anyone; what is loaded for a ``read`` key (or on an open server)."""
    policy: AccessPolicy = request.app.state.access
    auth = "keys" if policy.required else "open"
    if policy.required:
        try:
            authorize(request, "read")
        except HTTPException:
            return Health(status="ok", auth=auth)
    r = _rec(request)
    return Health(
        status="ok",
        auth=auth,
        feedback_backend=r.feedback.backend if r.feedback is not None else None,
        workspace=str(r.workspace.root),
        items=r.ds.n_items,
        users=r.ds.n_users,
        model=r.checkpoint,
        feedback_store=r.feedback is not None,
        pid=os.getpid(),
        words={
            "item": r.ds.profile.item_noun,
            "items": r.ds.profile.items,
            "category": r.ds.profile.category_noun,
            "categories": r.ds.profile.categories,
            "example_category": r.ds.categories[0] if r.ds.categories else "",
        },
    )


@router.post("/recommend", response_model=RecommendResult, tags=["recommend"])
async def recommend(
    req: RecommendRequest, request: Request, key: ApiKey | None = READ
) -> RecommendResult:
    """Explained recommendations for a known user (``user_id``) or a raw ``history``.

    A request that names no ``llm`` gets the server's default tier.
    """
    act_for(key, req.user_id)
    r = _rec(request)
    if "llm" not in req.model_fields_set:
        req.llm = r.settings.llm
    if req.llm == TierChoice.NONE:
        # Model-only answers are a few ms of CPU, mostly under the GIL: running them on
        # the event loop beats handing them to threads that fight over the GIL.
        return r.run(req)
    return await run_in_threadpool(r.run, req)  # LLM tiers wait on I/O: use threads


@router.get("/similar/{item_id}", tags=["recommend"])
def similar(
    item_id: str,
    request: Request,
    k: int = Query(10, ge=1, le=100),
    key: ApiKey | None = READ,
) -> list[dict[str, Any]]:
    """Items most similar in content to an item."""
    return _rec(request).similar(item_id, k=k)


@router.post("/feedback", response_model=FeedbackResponse, tags=["feedback"])
def feedback(
    body: FeedbackRequest, request: Request, key: ApiKey | None = FEEDBACK
) -> FeedbackResponse:
    """Record like / dislike / seen. Durable when acknowledged; the user's next request
    includes it (no retraining). Users unknown to the dataset get a history this way.
    With ``event_id``, a retry of the same event is stored once."""
    act_for(key, body.user_id, body.state.user_id if body.state else None)
    r = _rec(request)
    if body.session_id is not None:
        sid = _session_id(key, body.session_id)
        session = request.app.state.chat.session(sid, body.user_id, body.state)
        reply = session.rate(body.item_id, body.event, k=body.k)
        reply = reply.model_copy(update={"session_id": body.session_id})
        user = session.state.user_id
        return FeedbackResponse(
            user_id=user,
            item_id=body.item_id,
            event=body.event,
            stored=bool(reply.feedback and reply.feedback[0].stored),
            history_size=_history_size(r, user),
            chat=reply,
        )
    if body.user_id is None:
        raise ValueError("give a user_id (or the session_id of a chat)")
    row = r.record_feedback(body.user_id, body.item_id, body.event, event_id=body.event_id)
    return FeedbackResponse(
        id=row,
        backend=r.feedback.backend if r.feedback is not None else None,
        user_id=body.user_id,
        item_id=body.item_id,
        event=body.event,
        stored=True,
        history_size=_history_size(r, body.user_id),
    )


@router.post("/chat", response_model=ChatReply, tags=["chat"])
def chat(body: ChatRequest, request: Request, key: ApiKey | None = READ) -> ChatReply:
    """One chat turn: the message becomes an intent; the reply lists items with their
    explanations. Constraints persist in the session until changed."""
    act_for(key, body.user_id, body.state.user_id if body.state else None)
    _rec(request)
    engine: ChatEngine = request.app.state.chat
    sid = _session_id(key, body.session_id)
    reply = engine.chat(sid, body.message, body.user_id, body.state, k=body.k, llm=body.llm)
    return reply.model_copy(update={"session_id": body.session_id})


def app_factory() -> FastAPI:
    """The app for ``uvicorn --factory`` and multi-worker serving (``$MTREC_SERVE_WORKSPACE``;
    access rules from the environment, see ``AccessPolicy.load``)."""
    limit_torch_threads()
    return create_app(os.environ.get(ENV_WORKSPACE) or None, access=AccessPolicy.load())


def limit_torch_threads() -> None:
    """One torch thread per op (``$MTREC_TORCH_THREADS`` overrides; 0 keeps torch's default).

    Requests already run in parallel; intra-op threads on top of them oversubscribe the
    cores. Measured on 2 cores, 2 workers, 50 clients: ~8 ms of CPU per model-only request
    and ~195 requests/s with one torch thread, ~14 ms and ~110/s with torch's default; on
    cores busy with other work, ~8 ms against ~300 ms (spin-waits).
    """
    n = int(os.environ.get("MTREC_TORCH_THREADS", "1") or 0)
    if n > 0:
        import torch

        torch.set_num_threads(n)


def serve(
    workspace: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    llm: TierChoice | None = None,
    log_level: str = "warning",
    keys_file: str | Path | None = None,
    insecure: bool = False,
    rate_limit: float | None = None,
    max_body: int | None = None,
    cors_origins: list[str] | None = None,
) -> None:
    """Run the service under uvicorn (what ``mtrec serve`` does).

    With one worker the model is loaded here first, so a broken workspace is one readable
    error; with several, each worker process imports ``app_factory`` and loads it once.

    Args:
        keys_file: TOML file of API key hashes (default ``$MTREC_API_KEYS_FILE``; keys may
            also come from ``$MTREC_API_KEYS``).
        insecure: Serve a non-loopback address without keys.
        rate_limit: Requests per minute per key (a key's own ``rate_per_minute`` wins).
        max_body: Largest request body in bytes.
        cors_origins: Origins browsers may call the API from (default: none).

    Raises:
        ValueError: bad workers count or tier name; a non-loopback ``host`` without keys and
            without ``insecure``; a malformed keys file.
        WorkspaceError: no dataset or no trained model in the workspace.
    """
    import uvicorn

    from agent.workspace import Workspace

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    access = AccessPolicy.load(keys_file, rate_limit, max_body, cors_origins)
    if not access.required and not is_loopback(host) and not insecure:
        raise UsageError(
            f"refusing to serve {host} without API keys: anyone who reaches it could read "
            "every user's recommendations; give --keys-file (or MTREC_API_KEYS), or "
            "--insecure to serve it open"
        )
    if not access.required and not is_loopback(host):
        log.warning("serving %s with no API keys (--insecure): anyone may call it", host)
    if llm is not None:
        llm = tier_choice(llm)
    ws = Workspace(workspace)
    ws.dataset_spec()
    if not (ws.model_dir / "LATEST").is_file():
        raise WorkspaceError(f"no trained model in {ws.root}; run `mtrec train -w {ws.root}`")
    root = str(ws.root.resolve())
    os.environ[ENV_WORKSPACE] = root
    _export_access(keys_file, access)  # worker processes rebuild the policy from these
    if llm is not None:
        os.environ["MTREC_LLM"] = llm  # workers read their settings from the environment
    if workers == 1:
        limit_torch_threads()
        app = create_app(rec=_load(root), llm=llm, access=access)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    else:
        uvicorn.run(
            "agent.server:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
        )


# ---- helpers ----------------------------------------------------------------------------------
def _export_access(keys_file: str | Path | None, access: AccessPolicy) -> None:
    from agent import access as acc

    if keys_file:
        os.environ[acc.ENV_KEYS_FILE] = str(Path(keys_file).resolve())
    os.environ[acc.ENV_RATE] = str(access.rate_per_minute)
    os.environ[acc.ENV_MAX_BODY] = str(access.max_body)
    os.environ[acc.ENV_CORS] = ",".join(access.cors_origins)


def _load(workspace: str | Path | None) -> Recommender:
    return Recommender.load(workspace)


def _warm_up(rec: Recommender) -> None:
    """Open the index, load the embedder and run the model once."""
    try:
        user = rec.ds.users[0].user_id if rec.ds.n_users else None
        history = None if user is not None else [rec.ds.items[0].item_id]
        rec.recommend(user_id=user, history=history, query="warm up", k=1, llm=TierChoice.NONE)
    except Exception as e:  # a broken index shows up on the requests that need it
        log.warning("warm-up failed: %s", redact(str(e)))


def _limit_request_threads() -> None:
    """Cap the threads that run request handlers at ``$MTREC_SERVE_THREADS`` (unset: anyio's 40).

    Model-only requests are CPU-bound and hold the GIL for much of their time: one worker
    process on two cores with 50 clients spent ~26 ms of CPU per request (a third of it in
    the kernel, switching threads) against ~7 ms one at a time; a cap of 2 brought it to ~12.
    The default keeps many threads, so that slow LLM-tier calls never block other requests;
    use ``--workers`` (one per core) to use the cores.
    """
    import anyio.to_thread

    n = int(os.environ.get("MTREC_SERVE_THREADS", "0") or 0)
    if n > 0:
        anyio.to_thread.current_default_thread_limiter().total_tokens = n


def _rec(request: Request) -> Recommender:
    """The process's recommender; attaches a feedback store another process created."""
    rec: Recommender = request.app.state.rec
    if rec.feedback is None and rec.workspace.feedback_path.exists():
        rec.feedback_store()
    return rec


def _history_size(rec: Recommender, user_id: str | None) -> int | None:
    if user_id is None:
        return None
    try:
        return len(rec.user_history(user_id))
    except KeyError:
        return 0


def _install_error_handlers(app: FastAPI) -> None:
    from mtrec.data.errors import DataError
    from mtrec.model.checkpoint import CheckpointError

    @app.exception_handler(KeyError)
    async def not_found(request: Request, e: KeyError) -> JSONResponse:
        message, _ = user_facing(e)
        return JSONResponse({"detail": message}, status_code=404)

    @app.exception_handler(ValueError)
    async def unprocessable(request: Request, e: ValueError) -> JSONResponse:
        if isinstance(e, (ConfigFileError, DataError)):  # the server's files, not the request
            return await server_error(request, e)
        message, _ = user_facing(e)
        return JSONResponse({"detail": message}, status_code=422)

    @app.exception_handler(FeedbackStoreError)
    async def store_unavailable(request: Request, e: FeedbackStoreError) -> JSONResponse:
        message, _ = user_facing(e)
        log.error("%s %s: %s", request.method, request.url.path, message)
        return JSONResponse({"detail": message}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception) -> JSONResponse:
        from retrieval import RetrievalError

        known = (WorkspaceError, CheckpointError, RetrievalError, DataError, ConfigFileError)
        if isinstance(e, known):
            message, _ = user_facing(e)
        else:
            message = f"internal error ({type(e).__name__}); the server log has the details"
        log.error(
            "%s %s failed: %s",
            request.method,
            request.url.path,
            redact("".join(traceback.format_exception(e))),
        )
        return JSONResponse({"detail": message}, status_code=500)
