"""The dashboard's HTTP side: a Starlette app of server-rendered pages.

Routes: ``/`` overview, ``/tasks`` (``?id=`` one task; ``?task=&status=`` recent ones),
``/failures``, ``/dlq`` and ``/dlq/{queue}/{ref}``, ``/dlq/{queue}/redrive`` (GET: the
confirmation, POST: the redrive), ``/schedules``, ``/workers``, ``/login``, ``/logout``, static
files under ``/static``. A request with the ``X-Partial: 1`` header gets only the page's
``content`` block: the pages' little script fetches that every few seconds and swaps it in, so
live values refresh without a full reload.

Invariants: Jinja autoescapes everything; every mutating route is a POST checked by
:class:`~streamtasks.dashboard.security.Guard` (403 with the reason otherwise) and also refused
when its ``Origin`` is another site; Kafka is read in Starlette's thread pool, never on the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from streamtasks.dashboard import views
from streamtasks.dashboard.security import COOKIE, Guard
from streamtasks.dashboard.tails import Tails
from streamtasks.errors import StreamtasksError
from streamtasks.ops.dlq import DeadLetterNotFoundError, DeadLetterQueue
from streamtasks.wire.envelope import now_ms

__all__ = ["create_app", "selection_query", "template_environment"]

HERE = Path(__file__).parent
NAV = (
    ("/", "Overview"),
    ("/tasks", "Tasks"),
    ("/failures", "Failures"),
    ("/dlq", "Dead letters"),
    ("/schedules", "Schedules"),
    ("/workers", "Workers"),
)


def template_environment() -> jinja2.Environment:
    """The pages' Jinja environment: autoescape on for every template."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: task data is never trusted
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ms"] = _format_ms
    return env


def _format_ms(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


class _Site:
    """The handlers, bound to one :class:`Tails` and one :class:`Guard`."""

    def __init__(self, tails: Tails, guard: Guard) -> None:
        self.tails = tails
        self.guard = guard
        self.env = template_environment()

    def render(
        self, request: Request, name: str, ctx: dict[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        cookie = request.cookies.get(COOKIE)
        full = {
            "nav": NAV,
            "path": request.url.path,
            "app_name": self.tails.app.name,
            "problems": dict(self.tails.problems),
            "read_only": self.guard.read_only,
            "logged_in": self.guard.token_ok(cookie),
            "csrf": self.guard.csrf_for(cookie),
            "refresh": ctx.pop("refresh", True),
            **ctx,
        }
        template = self.env.get_template(name)
        if request.headers.get("x-partial") == "1":
            body = "".join(template.blocks["content"](template.new_context(full)))
        else:
            body = template.render(full)
        return HTMLResponse(body, status_code=status)

    def page(
        self, name: str, build: Callable[[Request], dict[str, Any]]
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                ctx = await run_in_threadpool(build, request)
            except DeadLetterNotFoundError as exc:
                return self.render(request, "error.html", {"message": str(exc)}, status=404)
            except StreamtasksError as exc:
                return self.render(request, "error.html", {"message": str(exc)}, status=503)
            return self.render(request, name, ctx)

        return endpoint

    # -- pages -------------------------------------------------------------------------------
    def tasks(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        task_id = q.get("id", "").strip()
        if task_id:
            return {"one": views.task_page(self.tails, task_id)}
        return {
            "one": None,
            **views.tasks_page(self.tails, task=q.get("task"), status=q.get("status")),
        }

    def dlq(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        return views.dlq_page(
            self.tails, queue=q.get("queue"), task=q.get("task"), error_match=q.get("error")
        )

    def letter(self, request: Request) -> dict[str, Any]:
        p = request.path_params
        return views.letter_page(self.tails, p["queue"], p["ref"])

    def confirm(self, request: Request) -> dict[str, Any]:
        queue = request.path_params["queue"]
        sel = _selection(dict(request.query_params))
        report = DeadLetterQueue(self.tails.app, queue).redrive(dry_run=True, timeout=5.0, **sel)
        return {"queue": queue, "sel": sel, "report": report, "done": False, "refresh": False}

    # -- actions -----------------------------------------------------------------------------
    async def redrive(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        refused = self.refusal(request, form)
        if refused is not None:
            return refused
        queue = request.path_params["queue"]
        sel = _selection(form)
        dlq = DeadLetterQueue(self.tails.app, queue)
        try:
            report = await run_in_threadpool(lambda: dlq.redrive(timeout=5.0, **sel))
        except StreamtasksError as exc:
            return self.render(request, "error.html", {"message": str(exc)}, status=503)
        ctx = {"queue": queue, "sel": sel, "report": report, "done": True, "refresh": False}
        return self.render(request, "redrive.html", ctx)

    def refusal(self, request: Request, form: dict[str, str]) -> Response | None:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
            reason: str | None = "a request from another site"
        else:
            reason = self.guard.allows(request.cookies.get(COOKIE), form.get("csrf"))
        if reason is None:
            return None
        return self.render(request, "error.html", {"message": f"refused: {reason}"}, status=403)

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            back = request.query_params.get("next", "/")
            ctx = {"wrong": False, "refresh": False, "request_next": back}
            return self.render(request, "login.html", ctx)
        form = await request.form()
        token = str(form.get("token", ""))
        if not self.guard.token_ok(token):
            ctx = {"wrong": True, "refresh": False, "request_next": str(form.get("next") or "/")}
            return self.render(request, "login.html", ctx, status=403)
        back = str(form.get("next") or "/")
        response = RedirectResponse(back if back.startswith("/") else "/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        refused = self.refusal(request, form)
        if refused is not None:
            return refused
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response


def _selection(fields: dict[str, str]) -> dict[str, Any]:
    """The dead letters a redrive form names: one ``ref``, or a task / error filter."""
    ref = fields.get("ref", "").strip()
    if ref:
        return {"refs": [ref]}
    return {
        "task": fields.get("task", "").strip() or None,
        "error_match": fields.get("error", "").strip() or None,
    }


def selection_query(sel: dict[str, Any]) -> str:
    if sel.get("refs"):
        return urlencode({"ref": sel["refs"][0]})
    return urlencode({"task": sel.get("task") or "", "error": sel.get("error_match") or ""})


def create_app(tails: Tails, guard: Guard) -> Starlette:
    """The ASGI app; ``tails`` must be started (the caller owns its lifetime)."""
    site = _Site(tails, guard)
    site.env.globals["selection_query"] = selection_query
    site.env.globals["now_ms"] = now_ms
    routes = [
        Route("/", site.page("overview.html", lambda r: views.overview_page(tails))),
        Route("/tasks", site.page("tasks.html", site.tasks)),
        Route("/failures", site.page("failures.html", lambda r: views.failures_page(tails))),
        Route("/dlq", site.page("dlq.html", site.dlq)),
        Route("/dlq/{queue}/redrive", site.page("redrive.html", site.confirm), methods=["GET"]),
        Route("/dlq/{queue}/redrive", site.redrive, methods=["POST"]),
        Route("/dlq/{queue}/{ref}", site.page("letter.html", site.letter)),
        Route("/schedules", site.page("schedules.html", lambda r: views.schedules_page(tails))),
        Route("/workers", site.page("workers.html", lambda r: views.workers_page(tails))),
        Route("/login", site.login, methods=["GET", "POST"]),
        Route("/logout", site.logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes)
