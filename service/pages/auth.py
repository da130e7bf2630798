"""Sessions for the pages: staff, CDG and admin sign in with e-mail and password; employers
with SIRET and access code. The signed session cookie holds who is signed in and until when."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import g, redirect, request, session, url_for
from sqlalchemy import select

from service.accounts.auth import Principal, verify_password
from service.accounts.models import User
from service.errors import Unauthorized
from service.extensions import db
from service.timeutil import utcnow

STAFF_SESSION = timedelta(hours=8)
EMPLOYER_SESSION = timedelta(hours=2)


def sign_in_user(email: str, password: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.active or not verify_password(user.password_hash, password):
        raise Unauthorized("Adresse ou mot de passe incorrect.", code="invalid_credentials")
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    session["expires"] = (utcnow() + STAFF_SESSION).timestamp()
    return user


def sign_in_employer(siret: str, kit_id: int) -> None:
    session.clear()
    session.permanent = True
    session["employer_siret"] = siret
    session["kit_id"] = kit_id
    session["expires"] = (utcnow() + EMPLOYER_SESSION).timestamp()


def sign_out() -> None:
    session.clear()


def current_principal() -> Principal | None:
    if "principal" in g:
        return g.principal
    who = None
    expires = session.get("expires")
    if expires is not None and expires > utcnow().timestamp():
        if "user_id" in session:
            user = db.session.get(User, session["user_id"])
            if user is not None and user.active:
                who = Principal(
                    role=user.role, email=user.email, user_id=user.id, cdg_code=user.cdg_code
                )
        elif "employer_siret" in session:
            who = Principal(role="employer", siret=session["employer_siret"])
    g.principal = who
    return who


def page_roles(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Require a signed-in user with one of `roles`; others go to their sign-in page."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            who = current_principal()
            if who is None or who.role not in roles:
                target = "pages.portal_login" if roles == ("employer",) else "pages.login"
                return redirect(url_for(target, suivant=request.path))
            return view(*args, **kwargs)

        return wrapper

    return decorator
