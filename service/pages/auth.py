"""Sessions for the pages: staff, CDG and admin sign in with e-mail and password; employers
with SIRET and access code.

A session lives on the server (`WebSession`, one row per signed-in browser); the signed cookie
only carries its random id, so signing out (which deletes the row) ends it for every copy of the
cookie. Password sign-in is throttled per address and per e-mail + address (with backoff); the
failures on one e-mail from every address together are only watched (see `LOGIN_*`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import g, redirect, request, session, url_for
from sqlalchemy import delete, select

from service.accounts.auth import Principal, agent_principal, hash_token, verify_password
from service.accounts.models import User, WebSession
from service.errors import Forbidden, Unauthorized
from service.extensions import db
from service.ratelimit import Rule, limiter
from service.timeutil import utcnow

log = logging.getLogger(__name__)
STAFF_SESSION = timedelta(hours=8)
EMPLOYER_SESSION = timedelta(hours=2)
AGENT_SESSION = timedelta(hours=2)

# failed password sign-ins; each rule's windows step up (backoff) and lift by themselves
LOGIN_ADDRESS = Rule.of("login-address", "20/15 minutes; 100/day")
LOGIN_ACCOUNT_ADDRESS = Rule.of("login-account-address", "5/15 minutes; 10/hour; 20/day")
# every address together, per e-mail: never refuses (a stranger spreading wrong passwords over
# many addresses must not lock the real user out), logs a warning when it fills up
LOGIN_ACCOUNT_WATCH = Rule.of("login-account-watch", "50/hour; 200/day")


def _address(address: str | None) -> str:
    return address or "inconnue"


def sign_in_user(email: str, password: str, *, address: str | None) -> User:
    """Check the password and open a session; 429 (with `Retry-After`) while throttled."""
    email = email.strip().lower()
    address = _address(address)
    rules = (
        (LOGIN_ADDRESS, (address,)),
        (LOGIN_ACCOUNT_ADDRESS, (email, address)),
    )
    limits = limiter()
    for rule, ids in rules:
        limits.check(rule, *ids)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None or not user.active or not verify_password(user.password_hash, password):
        for rule, ids in rules:
            limits.hit(rule, *ids)
        limits.hit(LOGIN_ACCOUNT_WATCH, email)
        if limits.retry_after(LOGIN_ACCOUNT_WATCH, email) is not None:
            log.warning(
                "wrong passwords keep coming for %r from several addresses (last: %s)",
                email,
                address,
            )
        raise Unauthorized("Adresse ou mot de passe incorrect.", code="invalid_credentials")
    limits.clear(LOGIN_ACCOUNT_ADDRESS, email, address)
    _open_session(lifetime=STAFF_SESSION, user_id=user.id)
    return user


def sign_in_employer(siret: str, kit_id: int) -> None:
    _open_session(lifetime=EMPLOYER_SESSION, siret=siret, kit_id=kit_id)
    session["kit_id"] = kit_id


def sign_in_agent(account_id: int) -> None:
    """An agent's browser (the `/adherent` space), once its password was checked."""
    _open_session(lifetime=AGENT_SESSION, agent_account_id=account_id)


def _open_session(
    *,
    lifetime: timedelta,
    user_id: int | None = None,
    siret: str | None = None,
    kit_id: int | None = None,
    agent_account_id: int | None = None,
) -> None:
    now = utcnow()
    _end_session()  # a new id at every sign-in (no fixation)
    db.session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    sid = secrets.token_urlsafe(32)
    db.session.add(
        WebSession(
            token_hash=hash_token(sid),
            user_id=user_id,
            siret=siret,
            kit_id=kit_id,
            agent_account_id=agent_account_id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    db.session.commit()
    session.permanent = True
    session["sid"] = sid
    g.pop("principal", None)


def _end_session() -> None:
    sid = session.get("sid")
    if isinstance(sid, str):
        db.session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(sid)))
    session.clear()


def sign_out() -> None:
    """End the session on the server: the cookie, wherever it was copied, no longer works."""
    _end_session()
    db.session.commit()
    g.pop("principal", None)


def current_principal() -> Principal | None:
    if "principal" in g:
        return g.principal
    who = None
    sid = session.get("sid")
    row = (
        db.session.scalar(select(WebSession).where(WebSession.token_hash == hash_token(sid)))
        if isinstance(sid, str)
        else None
    )
    if row is not None and row.expires_at > utcnow():
        if row.user_id is not None:
            user = row.user
            if user is not None and user.active:
                who = Principal(
                    role=user.role, email=user.email, user_id=user.id, cdg_code=user.cdg_code
                )
        elif row.siret is not None:
            who = Principal(role="employer", siret=row.siret)
        elif row.agent_account_id is not None:
            who = agent_principal(row.agent_account_id)
    g.principal = who
    return who


def safe_next_path(target: str | None) -> str | None:
    """`target` when it is a path of this site, else None.

    Browsers drop tabs and line breaks inside a URL, read `\\` as `/` and skip leading control
    characters and spaces, so `/\\t/evil.example` or `\\\\evil.example` would leave the site:
    any control character or backslash refuses the target, and what remains must start with one
    `/` and name no scheme or host.
    """
    if not target or any(ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in target):
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _reserved_to(roles: tuple[str, ...]) -> str:
    if set(roles) <= {"admin", "staff"}:
        return (
            "Accès réservé au personnel de l'assureur : votre compte ne permet pas d'ouvrir "
            "cette page."
        )
    return "Votre compte ne permet pas d'ouvrir cette page."


#: spaces whose pages send anyone else to their own sign-in page
SELF_SERVICE = {("employer",): "pages.portal_login", ("agent",): "pages.agent_login"}


def page_roles(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Require a signed-in user with one of `roles`: the signed-out go to their sign-in page, a
    signed-in user of another role gets a 403 page saying who the page is for (the portal's
    pages send anyone else to the portal's sign-in)."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            who = current_principal()
            if who is not None and who.role not in roles and roles not in SELF_SERVICE:
                raise Forbidden(_reserved_to(roles), code="forbidden")
            if who is None or who.role not in roles:
                target = SELF_SERVICE.get(roles, "pages.login")
                return redirect(url_for(target, suivant=request.path))
            return view(*args, **kwargs)

        return wrapper

    return decorator
