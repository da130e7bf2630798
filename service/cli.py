"""Flask CLI commands (`flask --app service …`)."""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import sys
import time
from multiprocessing.pool import AsyncResult

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from service.errors import ServiceError
from service.extensions import db
from service.wording import agree, counted

users = AppGroup("users", help="Comptes et jetons d'accès.")
demo = AppGroup("demo", help="Données de démonstration.")
kits = AppGroup("kits", help="Émission des kits.")


def _fail(error: ServiceError) -> None:
    db.session.rollback()
    click.echo(f"Erreur ({error.code}) : {error.message}", err=True)
    sys.exit(1)


@users.command("create")
@click.option("--role", type=click.Choice(["staff", "cdg", "admin"]), required=True)
@click.option("--cdg", "cdg_code", help="Code du CDG (rôle cdg).")
@click.option("--email", required=True)
@click.option(
    "--password", help="Mot de passe pour se connecter aux pages (10 caractères au moins)."
)
def users_create(role: str, cdg_code: str | None, email: str, password: str | None) -> None:
    """Crée un compte et affiche son jeton d'API, une seule fois, sur la dernière ligne."""
    from service.accounts.auth import create_user

    try:
        user, token = create_user(email=email, role=role, cdg_code=cdg_code, password=password)
        db.session.commit()
    except ServiceError as error:
        _fail(error)
        return
    click.echo(f"Compte {user.role} créé pour {user.email}. Jeton d'API (affiché une seule fois) :")
    click.echo(token)


@demo.command("load")
@click.option("--all", "everything", is_flag=True, help="Les 314 communes du Tarn et leurs EPCI.")
@click.option("--if-empty", is_flag=True, help="Ne fait rien si la base contient déjà un CDG.")
@click.option("--quiet", is_flag=True, help="Sans afficher les comptes créés.")
def demo_load(everything: bool, if_empty: bool, quiet: bool) -> None:
    """Charge le CDG du Tarn, sa convention 2025–2030 et des employeurs."""
    from service.backends import settings
    from service.demo.load import credential_line, load_demo
    from service.reference.models import Cdg

    if if_empty and db.session.scalar(select(Cdg).limit(1)) is not None:
        click.echo("Base déjà initialisée : données de démonstration non rechargées.")
        return
    result = load_demo(everything=everything, instance_path=settings().instance_path)
    click.echo(
        f"CDG 81 {'créé' if result.cdg_created else 'déjà présent'} ; "
        f"{counted(result.employers_created, 'employeur')} "
        f"{agree(result.employers_created, 'ajouté')}."
    )
    for account in [] if quiet else result.credentials:
        click.echo(credential_line(*account))


@demo.command("credentials")
def demo_credentials() -> None:
    """Affiche les comptes de démonstration (jetons et mots de passe)."""
    from service.backends import settings

    path = settings().instance_path / "demo-credentials.txt"
    if not path.exists():
        click.echo(
            "Aucun compte de démonstration enregistré : créez-en un avec "
            "`flask users create --role staff --email …`."
        )
        return
    click.echo(path.read_text(encoding="utf-8").rstrip())
    click.echo(
        "Mot de passe pour les pages ; jeton pour l'API (en-tête « Authorization: Bearer »)."
    )


@kits.command("issue")
@click.option("--siret", help="Émet le kit d'un employeur.")
@click.option(
    "--cdg", "cdg_code", help="Émet les kits de tous les employeurs du CDG qui n'en ont pas."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=lambda: min(os.cpu_count() or 1, 4),
    show_default="cœurs",
    help="Processus locaux quand aucun worker ne répond.",
)
@click.option("--no-wait", is_flag=True, help="Lance la campagne et affiche son numéro.")
@click.option(
    "--prerequisites-override-reason",
    default=None,
    help="Motif d'une émission malgré des pièces préalables manquantes (--siret ; journalisé).",
)
def kits_issue(
    siret: str | None,
    cdg_code: str | None,
    workers: int,
    no_wait: bool,
    prerequisites_override_reason: str | None,
) -> None:
    """Émet un kit (--siret) ou ceux de tout un CDG (--cdg) : une campagne exécutée par les
    workers, ou ici sur --workers processus si aucun ne répond, avec une barre de progression."""
    from service.campaigns.domain import running_campaign, start_campaign
    from service.engine.celery_app import live_workers
    from service.formatting import designation, group_code
    from service.kits.actions import issue_one
    from service.reference.domain import get_employer

    if bool(siret) == bool(cdg_code):
        raise click.UsageError("Indiquez --siret ou --cdg (l'un des deux).")
    actor = "cli:" + os.environ.get("USER", "inconnu")
    if siret:
        try:
            issued = issue_one(
                get_employer(siret),
                actor=actor,
                prerequisites_override_reason=prerequisites_override_reason,
            )
        except ServiceError as error:
            _fail(error)
            return
        employer = issued.kit.employer
        who = designation(employer.kind, employer.name).the
        click.echo(f"Kit {issued.kit.reference} émis pour {who}.")
        click.echo(f"Code d'accès : {group_code(issued.access_code)}")
        return
    # what the app holds lives until the command's exit: frozen then, out of the interpreter's
    # last collection, which no longer walks the app's modules and objects (0.7 s, measured)
    atexit.register(gc.freeze)
    answering = bool(live_workers())
    db.session.rollback()
    try:
        campaign = start_campaign(cdg_code or "", actor=actor, send=answering or no_wait)
    except ServiceError as error:
        db.session.rollback()
        current = running_campaign(cdg_code or "")
        if error.code == "campaign_running" and current is not None and not no_wait:
            # interrupted (Ctrl-C, a machine restarted) or run elsewhere: followed, or resumed
            click.echo(f"La campagne n° {current.id} du CDG {cdg_code} est en cours : reprise.")
            campaign = current
        elif error.code == "nothing_to_issue":
            click.echo(error.message)  # hE: says when employers wait for their papers
            return
        else:
            _fail(error)
            return
    campaign_id, total = campaign.id, campaign.total
    _echo_waiting(cdg_code or "")  # hE
    if no_wait:
        click.echo(
            f"Campagne n° {campaign_id} lancée : {counted(total, 'kit')} à émettre."
            + ("" if answering else " Aucun worker ne répond : elle attend qu'un worker démarre.")
        )
        click.echo(campaign_id)
        return
    if answering:
        click.echo(
            f"Campagne n° {campaign_id} du CDG {cdg_code} : {counted(total, 'kit')} à émettre, "
            "par les workers qui répondent."
        )
        _follow_campaign(campaign_id, total, cdg_code or "", local=None)
    else:
        _run_campaign_here(campaign_id, total, cdg_code or "", workers=workers)
        click.echo(
            "Les courriels « kit émis » partiront au démarrage d'un worker "
            "(ou avec « flask jobs run »)."
        )


def _echo_waiting(cdg_code: str) -> None:
    """hE: the CDG's employers a campaign leaves aside until their prerequisites arrive."""
    from service.campaigns.domain import waiting_for_prerequisites

    waiting = waiting_for_prerequisites(cdg_code)
    if waiting:
        click.echo(
            "En attente de pièces (pas de kit, pas en échec) : "
            f"{counted(len(waiting), 'collectivité')} – "
            + ", ".join(f"{e.name} (SIRET {e.siret})" for e in waiting)
        )
    db.session.rollback()


#: how often the command reads a campaign's progress (one indexed count: the command's end is
#: at most this late after the last kit)
POLL_SECONDS = 0.2

#: the app of a local process running a campaign's jobs (its context stays pushed)
_LOCAL_APP: list[Flask] = []


def _local_init(config: dict[str, object]) -> None:
    """A local process of a campaign run without workers: the app, as the command built it."""
    from service import create_app

    app = create_app(config)
    app.app_context().push()
    _LOCAL_APP.append(app)


def _local_job(job_id: int) -> bool:
    """Run one job of the campaign in a local process as a worker does; False if it failed."""
    from service.campaigns.tasks import run_campaign_job

    outcome = run_campaign_job(job_id)
    db.session.remove()
    return outcome.ok


def _run_campaign_here(campaign_id: int, total: int, cdg_code: str, *, workers: int) -> None:
    """The campaign's jobs on `workers` local processes (spawned: each builds the app), with the
    same progress bar as when workers do it."""
    from service.campaigns.domain import get_campaign, pending_job_ids

    job_ids = pending_job_ids(get_campaign(campaign_id))
    db.session.rollback()
    processes = max(1, min(workers, len(job_ids)))  # not two processes for one kit
    click.echo(
        f"Aucun worker ne répond : la campagne n° {campaign_id} du CDG {cdg_code} "
        f"({counted(len(job_ids), 'kit')} à émettre) est exécutée ici sur "
        f"{counted(processes, 'processus', 'processus')}."
    )
    config = dict(current_app.config.get("PSC_OVERRIDES") or {})
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=processes, initializer=_local_init, initargs=(config,)) as pool:
        running = pool.map_async(_local_job, job_ids, chunksize=1)
        _follow_campaign(campaign_id, total, cdg_code, local=running)
        running.wait()


def _follow_campaign(
    campaign_id: int, total: int, cdg_code: str, *, local: AsyncResult[list[bool]] | None
) -> None:
    """Progress read from the database every POLL_SECONDS until nothing is pending (or the local
    processes are done), then the totals and each failure; exit 1 if any kit failed."""
    from service.campaigns.domain import failures, get_campaign, progress, settle
    from service.engine.celery_app import live_workers
    from service.formatting import siret as format_siret

    shown, checked, deserted = 0, time.monotonic(), False
    with click.progressbar(
        length=total, label=f"Kits du CDG {cdg_code}", show_pos=True, show_eta=True
    ) as bar:
        while True:
            campaign = get_campaign(campaign_id)
            counts = progress(campaign)
            if local is None and time.monotonic() - checked > 10:
                checked, deserted = time.monotonic(), not live_workers()
            db.session.rollback()
            finished = counts.done + counts.failed
            if finished > shown:
                bar.update(finished - shown)
                shown = finished
            if counts.pending == 0 or deserted or (local is not None and local.ready()):
                break
            time.sleep(POLL_SECONDS)
    if deserted and counts.pending:
        click.echo(
            f"Plus aucun worker ne répond : la campagne n° {campaign_id} reprendra au démarrage "
            f"d'un worker ({counted(counts.pending, 'kit')} en attente).",
            err=True,
        )
        sys.exit(1)
    campaign = get_campaign(campaign_id)
    counts = settle(campaign)
    failed = failures(campaign)
    db.session.commit()
    click.echo(
        f"{counted(counts.done, 'kit')} {agree(counts.done, 'émis', 'émis')}, "
        f"{counted(counts.failed, 'échec')}."
    )
    if counts.pending:
        click.echo(
            f"{counted(counts.pending, 'kit')} {agree(counts.pending, 'reste', 'restent')} à "
            "émettre (nouvel essai plus tard, par un worker ou « flask jobs run »).",
            err=True,
        )
    for failure in failed:
        click.echo(
            f"  échec : {failure.name} (SIRET {format_siret(failure.siret)}) : {failure.error}",
            err=True,
        )
    if failed:
        sys.exit(1)


@kits.command("remind")
@click.option("--after-days", type=int, required=True, help="Kits émis depuis au moins N jours.")
@click.option("--cdg", "cdg_code", help="Les employeurs d'un seul CDG.")
def kits_remind(after_days: int, cdg_code: str | None) -> None:
    """Relance les employeurs dont les pièces signées manquent (pas deux fois en N jours)."""
    from service.reference.domain import get_cdg
    from service.reminders import remind_waiting

    try:
        if cdg_code is not None:
            get_cdg(cdg_code)
        sent = remind_waiting(after_days, actor="cli", cdg_code=cdg_code)
    except ServiceError as error:
        _fail(error)
        return
    click.echo(f"{counted(sent, 'relance')} {agree(sent, 'envoyée')}.")


signing = AppGroup("signing", help="Clé de contreseing de l'assureur.")
audit = AppGroup("audit", help="Journal d'audit.")


@signing.command("dev-cert")
def signing_dev_cert() -> None:
    """Crée le certificat de contreseing de DÉVELOPPEMENT dans le dossier d'instance."""
    from service.backends import dev_certificate_path
    from signing.countersign import load_pkcs12
    from signing.devcert import create_dev_certificate

    path = dev_certificate_path()
    existed = path.exists()
    key = load_pkcs12(create_dev_certificate(path), None)
    click.echo(f"{'Certificat existant' if existed else 'Certificat créé'} : {path}")
    click.echo(f"Sujet : {key.subject}")
    click.echo("Certificat de DÉVELOPPEMENT : en production, définissez SIGNING_PKCS12.")


# -- signing in the browser (hF) ------------------------------------------------------------


@signing.command("browser-ca")
@click.option("--pem", type=click.Path(dir_okay=False), help="Écrire le certificat de l'AC (PEM).")
def signing_browser_ca(pem: str | None) -> None:
    """L'AC de signature en ligne (BROWSER_SIGNING_CA_PKCS12, sinon celle de DÉVELOPPEMENT,
    créée au besoin) : son sujet, son empreinte, et son certificat pour les vérificateurs."""
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization

    from service.backends import browser_signing_ca

    ca = browser_signing_ca()
    click.echo(f"Sujet : {ca.cert.subject.rfc4514_string()}")
    click.echo(f"Empreinte SHA-256 : {ca.fingerprint}")
    if pem:
        Path(pem).write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
        click.echo(f"Certificat écrit : {pem}")


def _archived(done: int, failed: int) -> str:
    """« 3 copies archivées, 0 échec »."""
    return f"{counted(done, 'copie')} {agree(done, 'archivée')}, {counted(failed, 'échec')}."


@audit.command("verify")
def audit_verify() -> None:
    """Vérifie la chaîne de hachage du journal d'audit ; code de sortie non nul si rompue."""
    from service.audit.domain import verify_chain
    from service.audit.models import AuditHead

    problems = verify_chain()
    head = db.session.get(AuditHead, 1)
    if problems:
        for problem in problems:
            click.echo(f"RUPTURE : {problem}", err=True)
        sys.exit(1)
    count = head.count if head else 0
    click.echo(f"Journal intègre : {counted(count, 'événement')} {agree(count, 'chaîné')}.")


archive = AppGroup("archive", help="Archive du CDG.")


@archive.command("retry")
def archive_retry() -> None:
    """Archive ici les copies en attente (échéances ignorées), sans attendre les workers."""
    from service.archive.domain import pending_copies
    from service.engine.outbox import run_here

    done = failed = 0
    tried: set[int] = set()
    # a piece archived here may write its kit's manifest job: run it too, in the same command
    while todo := [job_id for job_id in pending_copies() if job_id not in tried]:
        db.session.rollback()
        for job_id in todo:
            tried.add(job_id)
            outcome = run_here(job_id)
            if outcome.ran:
                done += outcome.ok
                failed += not outcome.ok
    click.echo(_archived(done, failed))
    if failed:
        sys.exit(1)


@archive.command("verify")
@click.option("--sample", type=int, help="Relire N copies tirées au hasard.")
def archive_verify(sample: int | None) -> None:
    """Relit les copies archivées et compare leur SHA-256 ; non nul si écart ou absence."""
    from service.archive.domain import verify_archive
    from service.backends import archive_store

    report = verify_archive(archive=archive_store(), sample=sample)
    for problem in report.problems:
        click.echo(f"ÉCART : {problem}", err=True)
    click.echo(
        f"{counted(report.checked, 'copie')} {agree(report.checked, 'relue')}, "
        f"{counted(len(report.problems), 'écart')}."
    )
    if report.problems:
        sys.exit(1)


returns = AppGroup("returns", help="Pièces signées déposées.")


@returns.command("sweep")
@click.option(
    "--older-than",
    "minutes",
    type=int,
    default=None,
    help="Âge minimal en minutes (défaut : QUARANTINE_MAX_AGE_MINUTES, 60).",
)
def returns_sweep(minutes: int | None) -> None:
    """Supprime les copies de dépôts qu'aucun retour ne référence (laissées par un arrêt brutal)."""
    from service.returns.actions import sweep_leftover_uploads

    removed = sweep_leftover_uploads(older_than_minutes=minutes)
    click.echo(
        f"{counted(removed, 'copie')} {agree(removed, 'orpheline')} {agree(removed, 'supprimée')}."
    )


jobs = AppGroup("jobs", help="Travaux en arrière-plan (courriels, archivage, campagnes).")


@jobs.command("run")
def jobs_run() -> None:
    """Exécute ici les travaux en attente arrivés à échéance (sans worker)."""
    from service.engine.outbox import run_due

    done, failed = run_due()
    work = counted(done, "travail", "travaux")
    click.echo(f"{work} {agree(done, 'terminé')}, {counted(failed, 'échec')}.")
    if failed:
        sys.exit(1)


@jobs.command("sweep")
def jobs_sweep() -> None:
    """Renvoie aux workers les travaux dont le message s'est perdu."""
    from datetime import timedelta

    from service.config import settings
    from service.engine.outbox import sweep

    sent = sweep(stale_after=timedelta(seconds=settings().task_stale_seconds))
    click.echo(f"{counted(sent, 'travail', 'travaux')} {agree(sent, 'renvoyé')}.")


def register_cli(app: Flask) -> None:
    for group in (users, demo, kits, signing, audit, archive, returns, jobs):
        app.cli.add_command(group)
