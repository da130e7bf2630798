"""A kit's states and the only functions that move it from one to another.

No other module writes `kit.status` or spells a state: they use the names and groups declared
here (pretalx, `submission/enums.py`). Each transition stamps `status_changed_at` and refuses a
move the life of a kit does not allow with a `Conflict` whose code says why. The French labels
of the states live in `service.labels`, keyed by the same names.

    issued ──► employer_signed ──► countersigned ──► archived
      │               │
      └──► superseded (a newer kit for the employer), cancelled (by the staff)
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from service.errors import Conflict
from service.timeutil import utcnow

if TYPE_CHECKING:  # annotations only: the model imports this module for its default
    from service.kits.models import Kit


class KitState(StrEnum):
    ISSUED = "issued"
    EMPLOYER_SIGNED = "employer_signed"
    COUNTERSIGNED = "countersigned"
    ARCHIVED = "archived"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


ISSUED = KitState.ISSUED
EMPLOYER_SIGNED = KitState.EMPLOYER_SIGNED
COUNTERSIGNED = KitState.COUNTERSIGNED
ARCHIVED = KitState.ARCHIVED
SUPERSEDED = KitState.SUPERSEDED
CANCELLED = KitState.CANCELLED

#: every state, in the order of a kit's life
KIT_STATES: tuple[KitState, ...] = tuple(KitState)
#: waiting for signatures: a return may arrive, a newer kit replaces it, the staff may cancel it
OPEN_STATES: tuple[KitState, ...] = (ISSUED, EMPLOYER_SIGNED)
#: the insurer has signed: nothing more to sign
COUNTERSIGNED_STATES: tuple[KitState, ...] = (COUNTERSIGNED, ARCHIVED)
#: no signature expected any more
CLOSED_STATES: tuple[KitState, ...] = tuple(s for s in KitState if s not in OPEN_STATES)
#: an employer's current kit is its latest one in these states (a replaced kit is history)
CURRENT_STATES: tuple[KitState, ...] = tuple(s for s in KitState if s is not SUPERSEDED)

#: state -> the states it may move to
TRANSITIONS: dict[KitState, frozenset[KitState]] = {
    ISSUED: frozenset({EMPLOYER_SIGNED, SUPERSEDED, CANCELLED}),
    EMPLOYER_SIGNED: frozenset({COUNTERSIGNED, SUPERSEDED, CANCELLED}),
    COUNTERSIGNED: frozenset({ARCHIVED}),
    ARCHIVED: frozenset(),
    SUPERSEDED: frozenset(),
    CANCELLED: frozenset(),
}


def state_of(kit: Kit) -> KitState:
    try:
        return KitState(kit.status)
    except ValueError as exc:
        raise Conflict("Ce kit est dans un état inconnu.", code="unknown_kit_state") from exc


def can_move(kit: Kit, target: KitState) -> bool:
    return target in TRANSITIONS[state_of(kit)]


def refuse_unless_open(kit: Kit) -> None:
    """Why a kit takes no more signatures, as the returns and the countersignature say it."""
    state = state_of(kit)
    if state is SUPERSEDED:
        raise Conflict("Ce kit a été remplacé par un kit plus récent.", code="kit_superseded")
    if state is CANCELLED:
        raise Conflict("Ce kit a été annulé.", code="kit_cancelled")
    if state in COUNTERSIGNED_STATES:
        raise Conflict("Ce kit est déjà contresigné.", code="already_countersigned")


def _move(kit: Kit, target: KitState, at: datetime | None) -> datetime:
    if not can_move(kit, target):
        refuse_unless_open(kit)
        raise Conflict("Ce changement d'état n'est pas permis pour ce kit.", code="kit_state")
    now = at or utcnow()
    kit.status, kit.status_changed_at = target, now
    return now


def supersede(old: Kit, *, by: Kit, at: datetime | None = None) -> KitState:
    """A newer kit for the same employer replaces an open one; the state it left."""
    previous = state_of(old)
    _move(old, SUPERSEDED, at)
    old.superseded_by_id = by.id
    return previous


def mark_employer_signed(kit: Kit, *, at: datetime | None = None) -> None:
    """Every piece to sign has an accepted return (the returns decide when)."""
    kit.employer_signed_at = _move(kit, EMPLOYER_SIGNED, at)


def mark_countersigned(kit: Kit, *, at: datetime | None = None) -> None:
    if state_of(kit) is ISSUED:
        raise Conflict(
            "Les pièces signées par la collectivité ne sont pas toutes acceptées.",
            code="employer_signature_missing",
        )
    kit.countersigned_at = _move(kit, COUNTERSIGNED, at)


def mark_archived(kit: Kit, *, at: datetime | None = None) -> None:
    """The manifest is archived. A job run again (after a crash) finds the kit archived
    already: it stays so, from its first time."""
    if state_of(kit) is ARCHIVED:
        return
    if state_of(kit) is not COUNTERSIGNED:
        raise Conflict("Seul un kit contresigné s'archive.", code="kit_not_countersigned")
    kit.archived_at = _move(kit, ARCHIVED, at)


def cancel(kit: Kit, *, actor: str, reason: str, at: datetime | None = None) -> None:
    """The staff void an open kit (the caller checks the reason and closes the access code)."""
    if state_of(kit) not in OPEN_STATES:
        raise Conflict(
            "Seul un kit ouvert (émis ou signé par la collectivité) peut être annulé.",
            code="kit_not_open",
        )
    now = _move(kit, CANCELLED, at)
    kit.cancelled_at, kit.cancelled_by, kit.cancel_reason = now, actor, reason


# -- asked by the agents' registration (issue 11) -----------------------------------------------

#: every piece the employer signs has an accepted return: its agents may join
PIECES_SIGNED_STATES: tuple[KitState, ...] = (EMPLOYER_SIGNED, *COUNTERSIGNED_STATES)


def pieces_signed(kit: Kit | None) -> bool:
    """Whether the employer has signed every piece of this kit (its agents may then join)."""
    return kit is not None and state_of(kit) in PIECES_SIGNED_STATES
