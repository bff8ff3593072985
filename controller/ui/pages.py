"""/ui: the dashboard's pages, sign-in and sign-out.

Pages are Jinja2 templates with autoescaping; they carry only the signed-in user's id,
role and CSRF token. Everything else (bots, pools, events, logs) the page's script reads
from the JSON API with the session cookie and puts into the page as text, never as HTML.
Which bots a principal may see is the API's decision (BotManager.get / visible).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from common.ids import InvalidId, is_valid_id
from controller.api.middleware import AUTHENTICATOR, public
from controller.api.spec import PUBLIC, answer, op
from controller.bots.manager import BotManager
from controller.errors import FtpoolError, Unauthorized
from controller.ui.middleware import SESSIONS
from controller.ui.session import COOKIE, CSRF_FIELD, Session

HERE = Path(__file__).parent
MAX_TOKEN = 4096
STATIC_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# No inline script or style, no framing, no third-party origin: a name that slipped
# through escaping still could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, Chromium sends `Origin: null` on the sign-in form post.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


_HTML = {"type": "string"}


def _page(summary: str, *codes: int, ok: int = 200) -> dict[str, object]:
    """A dashboard page: HTML, authenticated by the session cookie (or a redirect to the
    sign-in page), never by a token header."""
    answers: dict[int | str, object] = {ok: answer(_HTML, "the page", "text/html")}
    for code in codes:
        answers[code] = (
            {"description": "a redirect"} if 300 <= code < 400
            else answer(_HTML, "an error page", "text/html")
        )  # fmt: skip
    return op(summary, security=PUBLIC, tags=("dashboard",), ok=answers)  # type: ignore[arg-type]


class UIPages:
    operations = {
        ("GET", "/ui"): op("the dashboard (a redirect to /ui/)", security=PUBLIC,
                           tags=("dashboard",), ok={302: {"description": "to /ui/"}}),
        ("GET", "/ui/"): _page("the fleet: pools, bots, events (signed in)", 302),
        ("GET", "/ui/login"): _page("the sign-in form", 302),
        ("POST", "/ui/login"): op(
            "sign in with a platform token or the admin token (a form field `token`): a "
            "session cookie", security=PUBLIC, tags=("dashboard",),
            ok={303: {"description": "signed in: to /ui/"},
                401: answer(_HTML, "not a valid token", "text/html"),
                403: answer(_HTML, "posted from another site", "text/html")},
        ),
        ("POST", "/ui/logout"): op(
            "end the session (needs its CSRF token)", security=PUBLIC, tags=("dashboard",),
            ok={303: {"description": "to /ui/login"}},
            errors=(403,),
        ),
        ("GET", "/ui/bots/{instanceId}"): _page("one bot's page (signed in)", 302, 400, 403, 404),
        ("GET", "/ui/static/{name}"): op(
            "the dashboard's script and stylesheet", security=PUBLIC, tags=("dashboard",),
            errors=(404,),
            ok={200: answer({"type": "string"}, "the file", "text/javascript"),
                "2XX": answer({"type": "string"}, "the stylesheet", "text/css")},
        ),
    }  # fmt: skip

    def __init__(self, bots: BotManager, *, cookie_secure: bool, frequi_url: str = "") -> None:
        self.bots = bots
        self.frequi_url = frequi_url  # where users open FreqUI (FREQUI_URL), if anywhere
        self.cookie_secure = cookie_secure
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.static = {name: (HERE / "static" / name).read_bytes() for name in STATIC_TYPES}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ui", self.root),
            web.get("/ui/", self.dashboard),
            web.get("/ui/login", self.login_form),
            web.post("/ui/login", self.login),
            web.post("/ui/logout", self.logout),
            web.get("/ui/bots/{instanceId}", self.bot_page),
            web.get("/ui/static/{name}", self.static_file),
        ]

    def _render(self, template: str, status: int = 200, **context: object) -> web.Response:
        html = self.templates.get_template(template).render(**context)
        return web.Response(
            text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
        )

    def _session(self, request: web.Request) -> Session | None:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            return request.app[SESSIONS].read(cookie)
        except Unauthorized:
            return None

    def _page_context(self, request: web.Request, session: Session) -> dict[str, object]:
        return {
            "user": session.principal.user_id,
            "role": session.principal.role,
            "csrf": request.app[SESSIONS].csrf_token(session),
        }

    @public
    async def root(self, _request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/")

    @public
    async def dashboard(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None:
            raise web.HTTPFound("/ui/login")
        return self._render("dashboard.html", **self._page_context(request, session))

    @public
    async def bot_page(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["instanceId"]
        if not is_valid_id(bot_id):  # a bad address is a bad request, signed in or not
            return self._render("error.html", 400, message="no such bot address")
        session = self._session(request)
        if session is None:
            raise web.HTTPFound("/ui/login")
        context = self._page_context(request, session)
        try:
            bot = self.bots.get(session.principal, request.match_info["instanceId"])
        except FtpoolError as exc:
            return self._render("error.html", exc.status, message=str(exc), **context)
        except InvalidId as exc:
            return self._render("error.html", 400, message=str(exc), **context)
        return self._render("bot.html", bot_id=bot.id, frequi_url=self.frequi_url, **context)

    @public
    async def login_form(self, request: web.Request) -> web.Response:
        if self._session(request) is not None:
            raise web.HTTPFound("/ui/")
        return self._render("login.html", error=None)

    @public
    async def login(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            return self._render("login.html", 403, error="sign in from this site's own page")
        form = await request.post()
        token = str(form.get("token", "")).strip()
        auth = request.app[AUTHENTICATOR]
        try:
            if not token or len(token) > MAX_TOKEN:
                raise Unauthorized("no token")
            principal = auth.bearer(token)
        except Unauthorized:
            return self._render("login.html", 401, error="that token is not valid")
        cookie, session = request.app[SESSIONS].issue(principal, auth.expires(token))
        response = web.HTTPSeeOther("/ui/")
        response.set_cookie(
            COOKIE, cookie, max_age=request.app[SESSIONS].max_age(session),
            path="/", httponly=True, samesite="Strict",
            secure=self.cookie_secure or request.secure,
        )  # fmt: skip
        raise response

    @public
    async def logout(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is not None:
            form = await request.post()
            keeper = request.app[SESSIONS]
            keeper.check_csrf(session, str(form.get(CSRF_FIELD, "")))
            await keeper.revoke(session)
        response = web.HTTPSeeOther("/ui/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    @public
    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.static:
            raise web.HTTPNotFound(reason="no such file")
        return web.Response(
            body=self.static[name], content_type=STATIC_TYPES[name], charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )  # fmt: skip


def same_origin(request: web.Request) -> bool:
    """Whether a form post comes from this site: its Origin (browsers send one) names our
    host, so another site cannot sign a visitor in as someone else."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host
