"""A kit's life: one module owns its states and transitions; nobody else spells a state."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import labels
from service import models as _every_model  # noqa: F401  (Kit names the returns' model)
from service.errors import Conflict
from service.extensions import db
from service.kits import lifecycle
from service.kits.lifecycle import (
    ARCHIVED,
    CANCELLED,
    COUNTERSIGNED,
    EMPLOYER_SIGNED,
    ISSUED,
    KIT_STATES,
    OPEN_STATES,
    SUPERSEDED,
    TRANSITIONS,
    KitState,
)
from service.kits.models import Kit
from tests.test_kits import SIRET, issue
from tests.test_reference_api import assert_error

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 3, 2, 9, 30)


def kit_in(state: KitState) -> Kit:
    """A real (unsaved) kit in `state`."""
    return Kit(id=7, reference="PSC-81-2026-000007", status=state, status_changed_at=None)


def _supersede(kit: Kit) -> None:
    lifecycle.supersede(kit, by=Kit(id=8), at=AT)


#: the state each transition function leads to
MOVES: dict[KitState, Callable[[Kit], None]] = {
    EMPLOYER_SIGNED: lambda kit: lifecycle.mark_employer_signed(kit, at=AT),
    COUNTERSIGNED: lambda kit: lifecycle.mark_countersigned(kit, at=AT),
    ARCHIVED: lambda kit: lifecycle.mark_archived(kit, at=AT),
    SUPERSEDED: _supersede,
    CANCELLED: lambda kit: lifecycle.cancel(
        kit, actor="agent@assureur.fr", reason="doublon", at=AT
    ),
}


def test_states_groups_and_transitions_are_declared_once() -> None:
    assert [str(s) for s in KIT_STATES] == [
        "issued",
        "employer_signed",
        "countersigned",
        "archived",
        "superseded",
        "cancelled",
    ]
    assert set(TRANSITIONS) == set(KitState)
    assert OPEN_STATES == (ISSUED, EMPLOYER_SIGNED)
    assert set(lifecycle.CLOSED_STATES) == set(KitState) - set(OPEN_STATES)
    assert SUPERSEDED not in lifecycle.CURRENT_STATES
    # nothing leaves a final state; nothing comes back to `issued`
    for final in (ARCHIVED, SUPERSEDED, CANCELLED):
        assert TRANSITIONS[final] == frozenset()
    assert all(ISSUED not in targets for targets in TRANSITIONS.values())


def test_every_state_has_its_french_labels() -> None:
    assert set(labels.KIT_STATES) == {*KitState, "none"}
    assert set(labels.KIT_STATE_SENTENCES) == set(KitState)
    for state in KitState:
        assert labels.kit_state(state) == labels.KIT_STATES[state.value]


@pytest.mark.parametrize("state", list(KitState), ids=str)
@pytest.mark.parametrize("target", list(MOVES), ids=str)
def test_a_transition_happens_only_where_the_life_allows_it(
    state: KitState, target: KitState
) -> None:
    kit = kit_in(state)
    if target in TRANSITIONS[state]:
        MOVES[target](kit)
        assert kit.status == target and kit.status_changed_at == AT
        return
    if state is target is ARCHIVED:
        MOVES[target](kit)  # an archive job run again leaves the kit as it was
        assert kit.status == ARCHIVED and kit.status_changed_at is None
        return
    with pytest.raises(Conflict):
        MOVES[target](kit)
    assert kit.status == state and kit.status_changed_at is None


def test_transitions_stamp_their_own_dates() -> None:
    kit = kit_in(ISSUED)
    lifecycle.mark_employer_signed(kit, at=AT)
    assert kit.employer_signed_at == AT
    lifecycle.mark_countersigned(kit, at=AT)
    assert kit.countersigned_at == AT
    lifecycle.mark_archived(kit, at=AT)
    assert kit.archived_at == AT and kit.status == ARCHIVED

    old = kit_in(EMPLOYER_SIGNED)
    assert lifecycle.supersede(old, by=Kit(id=8), at=AT) == EMPLOYER_SIGNED
    assert old.superseded_by_id == 8 and old.status == SUPERSEDED

    voided = kit_in(ISSUED)
    lifecycle.cancel(voided, actor="agent@assureur.fr", reason="doublon", at=AT)
    assert (voided.cancelled_at, voided.cancelled_by, voided.cancel_reason) == (
        AT,
        "agent@assureur.fr",
        "doublon",
    )


@pytest.mark.parametrize(
    ("state", "move", "code"),
    [
        (SUPERSEDED, EMPLOYER_SIGNED, "kit_superseded"),
        (CANCELLED, COUNTERSIGNED, "kit_cancelled"),
        (COUNTERSIGNED, SUPERSEDED, "already_countersigned"),
        (ARCHIVED, COUNTERSIGNED, "already_countersigned"),
        (ISSUED, COUNTERSIGNED, "employer_signature_missing"),
        (EMPLOYER_SIGNED, ARCHIVED, "kit_not_countersigned"),
        (COUNTERSIGNED, CANCELLED, "kit_not_open"),
        (SUPERSEDED, CANCELLED, "kit_not_open"),
    ],
)
def test_a_refused_transition_says_why(state: KitState, move: KitState, code: str) -> None:
    with pytest.raises(Conflict) as refused:
        MOVES[move](kit_in(state))
    assert refused.value.code == code
    assert refused.value.message and "_" not in refused.value.message


def test_an_unknown_state_is_refused_not_guessed() -> None:
    with pytest.raises(Conflict) as refused:
        lifecycle.mark_employer_signed(Kit(status="perdu"))
    assert refused.value.code == "unknown_kit_state"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_superseded_kit_cannot_be_cancelled_through_the_api(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    first = issue(client, staff)
    second = issue(client, staff)
    with app.app_context():
        old = db.session.get(Kit, first["id"])
        assert old.status == SUPERSEDED and old.superseded_by_id == second["id"]
        assert old.status_changed_at >= old.issued_at
    r = client.post(f"/api/v1/kits/{first['id']}/cancel", json={"reason": "doublon"}, headers=staff)
    assert_error(r, 409, "kit_not_open")
    r = client.post(
        f"/api/v1/kits/{second['id']}/cancel", json={"reason": "doublon"}, headers=staff
    )
    assert r.status_code == 200 and r.json["status"] == CANCELLED
    assert client.get(f"/api/v1/employers/{SIRET}", headers=staff).json["kit_status"] == CANCELLED


# -- nobody else spells a state ---------------------------------------------------------------

STATE_NAMES = {state.value for state in KitState}
#: the modules that may spell a state: the owner, and the French labels keyed by the names
OWNERS = {"service/kits/lifecycle.py", "service/labels.py"}
#: literals equal to a state name that are something else, with how many a file holds
OTHER_MEANINGS: dict[tuple[str, str], tuple[int, str]] = {
    ("service/kits/api.py", "countersigned"): (1, "a field of the API's return answer"),
    ("service/returns/api.py", "countersigned"): (2, "an API field; the copy of a file"),
    ("service/pages/portal.py", "countersigned"): (1, "which copy of a piece (labels.COPIES)"),
    ("service/pages/staff.py", "countersigned"): (1, "which copy of a piece (labels.COPIES)"),
    ("service/archive/bundle.py", "countersigned"): (1, "which copy of a piece (labels.COPIES)"),
    ("service/returns/preview.py", "issued"): (3, "the issued side of a piece compared"),
    ("service/returns/domain.py", "cancelled"): (1, "why a portal sign-in failed (audit)"),
}


def _audit_event_name(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> bool:
    """`record("archived", …)` and `AuditEvent.event == "archived"` name audit events, a
    vocabulary of their own (labels.EVENTS), not states."""
    parent = parents.get(node)
    if isinstance(parent, ast.Call) and parent.args and parent.args[0] is node:
        func = parent.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name == "record"
    if isinstance(parent, ast.Compare):
        sides = [parent.left, *parent.comparators]
        return any(isinstance(s, ast.Attribute) and s.attr == "event" for s in sides)
    return False


def _state_literals(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in STATE_NAMES
        and not _audit_event_name(node, parents)
    ]


def test_no_module_but_the_lifecycle_spells_a_state() -> None:
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted((ROOT / "service").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in OWNERS:
            continue
        for line, value in _state_literals(path.read_text(encoding="utf-8")):
            found.setdefault((rel, value), []).append(line)
    problems = [
        f"{rel}:{lines} spells {value!r}: use service.kits.lifecycle"
        for (rel, value), lines in sorted(found.items())
        if len(lines) != OTHER_MEANINGS.get((rel, value), (0, ""))[0]
    ]
    assert not problems, "\n".join(problems)


#: how the code names a kit (returns, archive jobs, batch runs and errors have states of their
#: own: `ret.status`, `job.status`, `run.status`, `mapped.status`)
_KIT_LIKE = re.compile(r"kit|^(old|current|previous|row|replaced)$", re.I)


def _status_writes(source: str) -> list[int]:
    """Lines assigning `<a kit>.status` or building a `Kit(status=…)`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [t for target in node.targets for t in _flatten(target)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr == "status"
                and _KIT_LIKE.search(ast.unparse(target.value))
            ):
                lines.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Kit"
            and any(k.arg == "status" for k in node.keywords)
        ):
            lines.append(node.lineno)
    return lines


def _flatten(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, ast.Tuple | ast.List):
        return [t for element in target.elts for t in _flatten(element)]
    return [target]


def test_only_the_lifecycle_writes_a_kit_status() -> None:
    assert _status_writes("kit.status, kit.at = 'x', now\nret.status = 'accepted'") == [1]
    assert _status_writes("old.status = s\nself.kit.status = s\njob.status = 'done'") == [1, 2]
    assert _status_writes("Kit(reference='r', status=s)") == [1]
    problems = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "service").rglob("*.py"))
        if path.relative_to(ROOT).as_posix() != "service/kits/lifecycle.py"
        for line in _status_writes(path.read_text(encoding="utf-8"))
    ]
    assert not problems, "kit.status written outside the lifecycle: " + ", ".join(problems)


def test_the_literal_scan_sees_a_status_write() -> None:
    # the scan can fail: a status written or compared by hand is found, an audit event is not
    source = (
        'kit.status = "cancelled"\n'
        'if kit.status in ("issued", "employer_signed"): pass\n'
        'record("archived", actor="system")\n'
        'q = select(AuditEvent).where(AuditEvent.event == "countersigned")\n'
    )
    assert _state_literals(source) == [(1, "cancelled"), (2, "issued"), (2, "employer_signed")]


#: a state name quoted inside a Jinja tag (`{% if kit.status == 'cancelled' %}`)
_JINJA = re.compile(r"\{[{%].*?[%}]\}", re.S)
_QUOTED_STATE = re.compile("['\"](" + "|".join(sorted(STATE_NAMES)) + ")['\"]")


def _template_states(text: str) -> list[str]:
    return [m.group(1) for tag in _JINJA.findall(text) for m in _QUOTED_STATE.finditer(tag)]


def test_no_template_spells_a_state() -> None:
    # the pages' templates compare with `kit_states.CANCELLED`, `kit_states.OPEN_STATES`…
    assert _template_states("{% if kit.status in ('issued', 'archived') %}x{% endif %}") == [
        "issued",
        "archived",
    ]
    assert _template_states('<p id="cancelled">{{ label("kit", kit.status) }}</p>') == []
    problems = [
        f"{path.relative_to(ROOT)}: {found}"
        for path in sorted((ROOT / "service" / "templates").rglob("*.html"))
        if (found := _template_states(path.read_text(encoding="utf-8")))
    ]
    assert not problems, "\n".join(problems)
