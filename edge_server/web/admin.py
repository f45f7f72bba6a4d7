"""The admin page (``/admin``): sign in with the admin token, review pending submissions on a
phone (approve, correct, reject, undo), and read the audit log.

Signing in checks the token as the REST admin routes do (``App.verify_admin_token``), and its
refusals are rate-limited with theirs (:mod:`edge_server.limits`); the session then carries
the sign-in until the token is reset. Decisions go
through the process's services, acting as the edge admin, like the REST review routes. Each
action answers with a redirect to the page (post/redirect/get), which says what happened.
"""

from __future__ import annotations

from flask import Response, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import Unauthorized

from core.errors import AuthError, BadRequest, ClassifiError
from core.metrics import WebEvent, count_web_event
from core.wire import ReviewAction, ReviewDecision
from edge_server.auth import checks_admin_token
from edge_server.services import current
from edge_server.web.blueprint import bp, page
from edge_server.web.security import admin_signed_in, sign_in_admin, sign_out_admin

#: Pending photos shown at once: a phone screen's worth of scrolling.
PAGE_SIZE = 20
AUDIT_SHOWN = 20
ERROR, DONE = "error", "done"  # flash categories

#: The page's three buttons and what each asks of the review use case.
DECISIONS = {
    WebEvent.APPROVE: ReviewAction.APPROVE,
    WebEvent.CORRECT: ReviewAction.APPROVE,  # with the label chosen
    WebEvent.REJECT: ReviewAction.REJECT,
}


def _to_admin_page() -> ResponseReturnValue:
    return redirect(url_for("web.admin_page"), code=303)


def _describe(decision: ReviewDecision) -> str:
    if decision.action.endswith("undo"):
        return f"Photo #{decision.photo_id} is pending again."
    if decision.status is None or decision.new_label is None:
        return f"Photo #{decision.photo_id} rejected."
    return f"Photo #{decision.photo_id} approved as {decision.new_label}."


@bp.get("/admin")
def admin_page() -> ResponseReturnValue:
    count_web_event(WebEvent.ADMIN_PAGE_VIEW)
    if not admin_signed_in():
        return page("sign_in.html")
    app = current().app
    pending = app.pending(limit=PAGE_SIZE + 1)
    return page(
        "admin.html",
        pending=pending[:PAGE_SIZE],
        more=len(pending) > PAGE_SIZE,
        audit=app.audit_log(AUDIT_SHOWN),
    )


@bp.post("/admin/sign-in")
@checks_admin_token  # refusals count towards the sign-in rate limit
def sign_in() -> ResponseReturnValue:
    count_web_event(WebEvent.ADMIN_SIGN_IN)
    try:
        current().app.verify_admin_token(request.form.get("token", "").strip() or None)
    except AuthError:
        message = (
            "That is not the admin token. It was printed when the server first started; "
            "`classifi admin-token reset` makes a new one."
        )
        return page("sign_in.html", error=message, status=401)
    sign_in_admin()
    return _to_admin_page()


@bp.post("/admin/sign-out")
def sign_out() -> ResponseReturnValue:
    sign_out_admin()
    return _to_admin_page()


def _photo_id() -> int:
    raw = request.form.get("photo_id", "")
    if not raw.isdigit():
        raise BadRequest("The form names no photo: reload the page.", code="missing_field")
    return int(raw)


@bp.post("/admin/decide")
def decide() -> ResponseReturnValue:
    if not admin_signed_in():
        return _to_admin_page()
    try:
        button = WebEvent(request.form.get("decision", ""))
        action = DECISIONS[button]
    except (ValueError, KeyError):
        flash("Unknown decision: use the page's buttons.", ERROR)
        return _to_admin_page()
    count_web_event(button)
    label = request.form.get("label") if button == WebEvent.CORRECT else None
    try:
        (decision,) = current().review([_photo_id()], action, label)
        flash(_describe(decision), DONE)
    except ClassifiError as exc:  # decided meanwhile, a label no longer offered...
        flash(str(exc), ERROR)
    return _to_admin_page()


@bp.post("/admin/undo")
def undo() -> ResponseReturnValue:
    if not admin_signed_in():
        return _to_admin_page()
    count_web_event(WebEvent.UNDO)
    try:
        (decision,) = current().app.undo()
        flash(_describe(decision), DONE)
    except ClassifiError as exc:  # nothing to undo, or the photo has moved on
        flash(str(exc), ERROR)
    return _to_admin_page()


@bp.get("/admin/photos/<int:photo_id>")
def photo(photo_id: int) -> ResponseReturnValue:
    if not admin_signed_in():
        raise Unauthorized("Sign in on the admin page to see submitted photos.")
    data, content_type = current().app.photo_image(photo_id)
    response = Response(data, content_type=content_type)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
