"""Attack surface: throttled guessing that strangers cannot turn against the real user, sessions
that end on the server, ids out of range, off-site redirects, CSV formulas, 405 and 429 headers.

Throttling runs on the `limits` memory backend and on Redis (127.0.0.1:6379), each test with its
own key prefix. Time is moved forward through the clock the rate limiter reads.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from service.extensions import db
from tests.conftest import auth, create_token, employer_payload

SIRET = "21810004800014"
OTHER_SIRET = "21810001400016"
WRONG = "AAAA-BBBB-CCCC-DDDD"
PASSWORD = "un long mot de passe"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def limiter_kind() -> str:
    return "memory"


@pytest.fixture
def extra_config() -> dict[str, str]:
    return {}


@pytest.fixture
def app_config(limiter_kind: str, extra_config: dict[str, str]) -> dict[str, str]:
    """The rate limiter's backend, with a key prefix of its own for every test."""
    config = {"RATELIMIT_PREFIX": f"test-{uuid.uuid4().hex}", **extra_config}
    if limiter_kind == "redis":
        config["REDIS_URL"] = REDIS_URL
    return config


LIMITERS = pytest.mark.parametrize("limiter_kind", ["memory", "redis"])
SQLITE = pytest.mark.parametrize("backend", ["sqlite"])


class Clock:
    """The clock of the rate limiter (and of `limits`' storages), moved forward on demand."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    import limits.storage.memory
    import limits.storage.redis

    import service.ratelimit

    fake = Clock()
    for module in (limits.storage.memory, limits.storage.redis, service.ratelimit):
        monkeypatch.setattr(module, "time", fake)
    yield fake


def portal(client: FlaskClient, code: str, *, address: str, siret: str = SIRET) -> Any:
    return client.post(
        "/api/v1/portal/session",
        json={"siret": siret, "access_code": code},
        environ_base={"REMOTE_ADDR": address},
    )


def assert_throttled(response: Any, *, at_most: int) -> int:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.json["error"]["code"] == "too_many_attempts"
    wait = int(response.headers["Retry-After"])
    assert 0 < wait <= at_most
    return wait


@pytest.fixture
def kit(client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert r.status_code == 201
    return r.json


def csrf(client: FlaskClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match is not None
    return match.group(1)


def make_user(app: Flask, email: str, role: str = "staff") -> None:
    from service.accounts.auth import create_user

    with app.app_context():
        create_user(email=email, role=role, password=PASSWORD)
        db.session.commit()


def sign_in(
    client: FlaskClient, email: str, password: str = PASSWORD, *, address: str = "192.0.2.1"
) -> Any:
    token = csrf(client, "/connexion")
    return client.post(
        "/connexion",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


# -- portal throttle -------------------------------------------------------------------------


@SQLITE
@LIMITERS
def test_portal_guessing_never_refuses_the_right_code_from_another_address(
    client: FlaskClient, staff: dict[str, str], kit: dict[str, Any], clock: Clock
) -> None:
    for _ in range(5):
        assert portal(client, WRONG, address="203.0.113.66").status_code == 401
    assert_throttled(portal(client, WRONG, address="203.0.113.66"), at_most=900)
    # the guessing address is refused even with the right code…
    assert_throttled(portal(client, kit["access_code"], address="203.0.113.66"), at_most=900)
    # …but the real employer, from its own address, is not
    assert portal(client, kit["access_code"], address="192.0.2.10").status_code == 200
    # ten, twenty more strangers' failures change nothing for it: nothing ever locks for good
    for n in range(4):
        for _ in range(5):
            portal(client, WRONG, address=f"198.51.100.{n}")
    assert portal(client, kit["access_code"], address="192.0.2.10").status_code == 200
    # staff may clear the SIRET's limits at once, for every address that guessed it
    r = client.post(f"/api/v1/employers/{SIRET}/unlock", headers=staff)
    assert r.status_code == 200 and r.json == {"siret": SIRET, "locked": False}
    for address in ("203.0.113.66", "198.51.100.0", "198.51.100.3"):
        assert portal(client, kit["access_code"], address=address).status_code == 200


@SQLITE
@LIMITERS
def test_portal_throttle_lifts_with_time_and_backs_off(
    client: FlaskClient, kit: dict[str, Any], clock: Clock
) -> None:
    address = "203.0.113.7"
    for _ in range(5):
        assert portal(client, WRONG, address=address).status_code == 401
    first = assert_throttled(portal(client, WRONG, address=address), at_most=900)
    clock.advance(first + 1)  # the first window has passed: guesses are answered again
    for _ in range(5):
        assert portal(client, WRONG, address=address).status_code == 401
    # ten in the hour: the wait now runs to the end of the hour, longer than the first
    second = assert_throttled(portal(client, WRONG, address=address), at_most=3600)
    assert second > 900
    clock.advance(second + 1)
    assert portal(client, kit["access_code"], address=address).status_code == 200


@SQLITE
def test_portal_address_limit_covers_every_siret(
    client: FlaskClient, kit: dict[str, Any], clock: Clock
) -> None:
    address = "203.0.113.9"
    for n in range(20):  # four SIRETs, five guesses each: each pair stays under its own limit
        siret = f"2181000{n // 5:02d}00014"
        assert portal(client, WRONG, address=address, siret=siret).status_code == 401
    assert_throttled(portal(client, WRONG, address=address, siret=OTHER_SIRET), at_most=900)
    assert_throttled(portal(client, kit["access_code"], address=address), at_most=900)
    assert portal(client, kit["access_code"], address="192.0.2.10").status_code == 200


@SQLITE
def test_portal_page_answers_429_with_retry_after(client: FlaskClient) -> None:
    for expected in (200, 200, 200, 200, 200, 429):  # the form is shown again each time
        r = client.post(
            "/portail",
            data={
                "siret": SIRET,
                "access_code": WRONG,
                "csrf_token": csrf(client, "/portail"),
            },
            environ_base={"REMOTE_ADDR": "203.0.113.5"},
        )
        assert r.status_code == expected
    assert int(r.headers["Retry-After"]) > 0
    assert "Trop de tentatives" in r.get_data(as_text=True)


@SQLITE
@pytest.mark.parametrize("extra_config", [{"TRUSTED_PROXIES": "1"}], ids=["one-proxy"])
def test_trusted_proxy_gives_the_client_address(client: FlaskClient, kit: dict[str, Any]) -> None:
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    def through_proxy(code: str, forwarded_for: str) -> Any:
        return client.post(
            "/api/v1/portal/session",
            json={"siret": SIRET, "access_code": code},
            environ_base=proxy,
            headers={"X-Forwarded-For": forwarded_for},
        )

    for _ in range(5):  # a client may prepend anything: only the proxy's own entry counts
        assert through_proxy(WRONG, f"1.2.3.{_}, 203.0.113.66").status_code == 401
    assert through_proxy(kit["access_code"], "203.0.113.66").status_code == 429
    assert through_proxy(kit["access_code"], "192.0.2.10").status_code == 200


@SQLITE
def test_forwarded_for_is_ignored_without_trusted_proxies(client: FlaskClient) -> None:
    for n in range(5):
        r = client.post(
            "/api/v1/portal/session",
            json={"siret": SIRET, "access_code": WRONG},
            environ_base={"REMOTE_ADDR": "203.0.113.66"},
            headers={"X-Forwarded-For": f"192.0.2.{n}"},
        )
        assert r.status_code == 401
    assert portal(client, WRONG, address="203.0.113.66").status_code == 429


# -- password sign-in throttle ---------------------------------------------------------------


@SQLITE
@LIMITERS
def test_sign_in_throttled_per_address_and_email_not_for_the_real_user(
    app: Flask, client: FlaskClient, clock: Clock
) -> None:
    from service.pages.auth import LOGIN_ACCOUNT_ADDRESS
    from service.ratelimit import EXTENSION

    make_user(app, "agent@assureur.fr")
    for _ in range(4):  # four failures already counted (each costs a password hash)
        app.extensions[EXTENSION].hit(LOGIN_ACCOUNT_ADDRESS, "agent@assureur.fr", "203.0.113.66")
    r = sign_in(client, "agent@assureur.fr", "mauvais mot de passe", address="203.0.113.66")
    assert r.status_code == 200 and "incorrect" in r.get_data(as_text=True)
    r = sign_in(client, "agent@assureur.fr", address="203.0.113.66")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "Trop de tentatives" in r.get_data(as_text=True)
    assert sign_in(client, "agent@assureur.fr", address="192.0.2.1").status_code == 302
    clock.advance(15 * 60 + 1)
    assert sign_in(client, "agent@assureur.fr", address="203.0.113.66").status_code == 302


@SQLITE
@LIMITERS
def test_sign_in_throttled_per_address_across_emails(
    app: Flask, client: FlaskClient, clock: Clock
) -> None:
    from service.pages.auth import LOGIN_ADDRESS
    from service.ratelimit import EXTENSION

    make_user(app, "agent@assureur.fr")
    limiter = app.extensions[EXTENSION]
    for _ in range(19):  # nineteen failures already counted for this address…
        limiter.hit(LOGIN_ADDRESS, "203.0.113.66")
    # …the twentieth, for an e-mail never tried from here, fills the window
    r = sign_in(client, "inconnu@assureur.fr", "x" * 12, address="203.0.113.66")
    assert r.status_code == 200
    assert sign_in(client, "agent@assureur.fr", address="203.0.113.66").status_code == 429


@SQLITE
def test_sign_in_never_refuses_the_right_password_from_a_fresh_address(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    make_user(app, "agent@assureur.fr")
    # a stranger spreads 50 wrong passwords for the account over ten addresses
    for n in range(10):
        for _ in range(5):
            r = sign_in(client, "Agent@Assureur.fr", "faux mot de passe", address=f"198.51.100.{n}")
            assert r.status_code == 200 and "incorrect" in r.get_data(as_text=True)
    # each of its addresses is throttled for this account, even with the right password…
    assert sign_in(client, "agent@assureur.fr", address="198.51.100.3").status_code == 429
    # …the guessing is logged for the operators…
    assert any("wrong passwords keep coming for 'agent@assureur.fr'" in m for m in caplog.messages)
    # …and the real user, from its own address, signs in: the account is never locked
    assert sign_in(client, "agent@assureur.fr", address="192.0.2.1").status_code == 302
    assert sign_in(client, "agent@assureur.fr", "faux", address="192.0.2.2").status_code == 200
    assert sign_in(client, "agent@assureur.fr", address="192.0.2.2").status_code == 302


@SQLITE
def test_sign_in_with_redis_down_answers_503(database_url: str, tmp_path: Any) -> None:
    from tests.conftest import make_app

    app = make_app(database_url, tmp_path, REDIS_URL="redis://127.0.0.1:1/0")
    try:
        client = app.test_client()
        make_user(app, "agent@assureur.fr")
        r = sign_in(client, "agent@assureur.fr")
        assert r.status_code == 503
        assert "momentanément indisponible" in r.get_data(as_text=True)
    finally:
        from tests.conftest import _reset

        _reset(app)


# -- sessions end on the server ---------------------------------------------------------------


def test_staff_session_cookie_copied_before_sign_out_is_refused_after(
    app: Flask, client: FlaskClient
) -> None:
    make_user(app, "agent@assureur.fr")
    assert sign_in(client, "agent@assureur.fr").status_code == 302
    assert client.get("/").status_code == 200
    cookie = client.get_cookie("psc_session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("psc_session", cookie.value)
    assert thief.get("/").status_code == 200  # the copy works while the session lives
    client.post("/deconnexion", data={"csrf_token": csrf(client, "/")})
    r = thief.get("/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/connexion")
    assert client.get("/").status_code == 302


def test_portal_session_cookie_copied_before_sign_out_is_refused_after(
    app: Flask, client: FlaskClient, kit: dict[str, Any]
) -> None:
    r = client.post(
        "/portail",
        data={
            "siret": SIRET,
            "access_code": kit["access_code"],
            "csrf_token": csrf(client, "/portail"),
        },
    )
    assert r.status_code == 302
    assert client.get("/portail/kit").status_code == 200
    cookie = client.get_cookie("psc_session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("psc_session", cookie.value)
    assert thief.get("/portail/kit").status_code == 200
    client.post("/portail/deconnexion", data={"csrf_token": csrf(client, "/portail/kit")})
    r = thief.get("/portail/kit")
    assert r.status_code == 302 and r.headers["Location"].startswith("/portail")


@SQLITE
def test_session_expires_on_the_server(app: Flask, client: FlaskClient) -> None:
    from service.accounts.models import WebSession
    from service.timeutil import utcnow

    make_user(app, "agent@assureur.fr")
    sign_in(client, "agent@assureur.fr")
    with app.app_context():
        (row,) = db.session.scalars(db.select(WebSession)).all()
        assert 7.9 * 3600 < (row.expires_at - row.created_at).total_seconds() <= 8 * 3600
        db.session.execute(update(WebSession).values(expires_at=utcnow()))
        db.session.commit()
    assert client.get("/").status_code == 302


@SQLITE
def test_sign_in_replaces_the_previous_session(app: Flask, client: FlaskClient) -> None:
    from service.accounts.models import WebSession

    make_user(app, "agent@assureur.fr")
    sign_in(client, "agent@assureur.fr")
    before = client.get_cookie("psc_session")
    assert before is not None
    sign_in(client, "agent@assureur.fr")
    with app.app_context():
        assert len(db.session.scalars(db.select(WebSession)).all()) == 1
    stale = app.test_client()
    stale.set_cookie("psc_session", before.value)
    assert stale.get("/").status_code == 302


# -- ids out of range ------------------------------------------------------------------------


def _id_routes(app: Flask) -> list[tuple[str, str]]:
    from service import IdConverter

    found = []
    for rule in app.url_map.iter_rules():
        if not any(isinstance(c, IdConverter) for c in rule._converters.values()):
            continue
        method = "GET" if "GET" in rule.methods else sorted(rule.methods - {"OPTIONS"})[0]
        found.append((method, rule.rule))
    return found


@SQLITE
def test_ids_out_of_range_are_404_on_every_route(app: Flask, client: FlaskClient) -> None:
    make_user(app, "agent@assureur.fr")
    assert sign_in(client, "agent@assureur.fr").status_code == 302  # pages answer, not redirect
    staff = auth(create_token(app, "staff", "production@assureur.fr"))
    routes = _id_routes(app)
    assert len(routes) >= 20  # every `<int:…>` route goes through the bounded converter
    for value, (method, rule) in itertools.product([2**63, 2**64 + 5, 2**31, 10**40, 0], routes):
        path = re.sub(r"<int:\w+>", str(value), rule)
        path = re.sub(r"<(?:\w+:)?\w+>", "special-conditions", path)
        r = client.open(path, method=method, headers=staff)
        assert r.status_code == 404, (method, path, r.status_code)
        if path.startswith("/api/"):
            assert r.json["error"]["code"] == "not_found"


@SQLITE
def test_largest_id_in_range_is_an_ordinary_404(client: FlaskClient, staff: dict[str, str]) -> None:
    r = client.get(f"/api/v1/kits/{2**31 - 1}", headers=staff)
    assert r.status_code == 404 and r.json["error"]["code"] == "unknown_kit"


# -- redirect after sign-in -------------------------------------------------------------------


OFF_SITE = [
    "//evil.example/x",
    "///evil.example/x",
    "/\t/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\r\n/evil.example",
    "/\r\nSet-Cookie: x=1",
    "/\x00/evil.example",
    "https://evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "evil.example",
    "",
]


@SQLITE
def test_sign_in_redirect_stays_on_site(app: Flask, client: FlaskClient) -> None:
    make_user(app, "agent@assureur.fr")
    for target in OFF_SITE:
        client.post("/deconnexion", data={"csrf_token": csrf(client, "/connexion")})
        token = csrf(client, "/connexion")
        r = client.post(
            "/connexion",
            query_string={"suivant": target},
            data={"email": "agent@assureur.fr", "password": PASSWORD, "csrf_token": token},
        )
        if "\x00" in target:  # a NUL in the address refuses the request before it signs in
            assert r.status_code == 422 and "Caractère nul interdit" in r.get_data(as_text=True)
            continue
        assert r.status_code == 302 and r.headers["Location"] == "/", target


@SQLITE
def test_sign_in_redirect_keeps_a_site_path(app: Flask, client: FlaskClient) -> None:
    make_user(app, "agent@assureur.fr")
    token = csrf(client, "/connexion")
    r = client.post(
        "/connexion",
        query_string={"suivant": "/employeurs/21810004800014?onglet=retours"},
        data={"email": "agent@assureur.fr", "password": PASSWORD, "csrf_token": token},
    )
    assert r.status_code == 302
    assert r.headers["Location"] == "/employeurs/21810004800014?onglet=retours"


# -- tracking CSV ----------------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example")', "+33 Albi", "-1+2", "@SUM(A1)"]


@SQLITE
def test_tracking_csv_neutralises_formulas_and_keeps_the_siret_as_text(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    from service.reference.models import Employer
    from service.reference.rules import siret_from_siren

    names = [*FORMULAS, "Tab", "Saint-Juéry"]
    sirets = [siret_from_siren("218100048", n + 1) for n in range(len(names))]
    for siret, name in zip(sirets, names, strict=True):
        r = client.post(
            "/api/v1/employers",
            json=employer_payload(convention["id"], siret=siret, name=name),
            headers=staff,
        )
        assert r.status_code == 201, r.json
    with app.app_context():  # whatever the schema lets in, the CSV must not rely on it
        db.session.execute(update(Employer).where(Employer.name == "Tab").values(name="\tTab"))
        db.session.commit()
    own = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    r = client.get("/api/v1/cdgs/81/tracking.csv", headers=own)
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig")), delimiter=";"))
    by_siret = {row[0]: row for row in rows[1:]}
    assert {row[1] for row in rows[1:]} == {
        *("'" + name for name in FORMULAS),
        "'\tTab",
        "Saint-Juéry",  # only the first character matters
    }
    assert all(
        not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row
    )
    assert by_siret["218 100 048 00014"][1] == "'" + FORMULAS[0]
    for cell in by_siret:  # grouped: no locale reads a five-digit last group as a number
        assert re.fullmatch(r"\d{3} \d{3} \d{3} \d{5}", cell)
        assert cell.replace(" ", "") in sirets


# -- 405 and 429 headers ---------------------------------------------------------------------


@SQLITE
def test_method_not_allowed_says_which_methods_are(client: FlaskClient) -> None:
    r = client.delete("/api/v1/health")
    assert r.status_code == 405 and r.json["error"]["code"] == "method_not_allowed"
    assert "GET" in {m.strip() for m in r.headers["Allow"].split(",")}
    r = client.put("/connexion", headers={"Accept": "text/html"})
    assert r.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in r.headers["Allow"].split(",")}
    assert "Méthode non autorisée" in r.get_data(as_text=True)
