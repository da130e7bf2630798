"""The manifest's job re-run after a crash between its uploads and its commit (moto's S3)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.archive.domain import MANIFEST, archive_copy, archive_policy
from service.backends import archive_store, document_store
from service.engine import outbox
from service.engine.models import Job
from service.extensions import db
from tests.conftest import run_jobs
from tests.pki import Pki
from tests.test_archive import app_config, bucket, s3, signed_kit  # noqa: F401

COPY = "psc.archive.copy"


@pytest.mark.parametrize("backend", ["postgres"])
def test_manifest_job_rerun_after_a_crash_converges(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
    moto_endpoint: str,
    bucket: str,  # noqa: F811
) -> None:
    """The manifest and the proof certificate uploaded, the process dies before the commit: the
    re-run rebuilds the same bytes (retention forbids replacing them) and archives the kit."""
    kit = signed_kit(client, staff, pki)
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200, r.json
    with app.app_context():
        for job_id in db.session.scalars(select(Job.id).where(Job.task == COPY)).all():
            assert outbox.run_here(job_id).ok  # the pieces; the last writes the manifest's job
        manifest = next(
            j
            for j in db.session.scalars(
                select(Job).where(Job.task == COPY, Job.status == "pending")
            )
            if j.payload["kind"] == MANIFEST
        )
        archive_copy(
            manifest, documents=document_store(), archive=archive_store(), policy=archive_policy()
        )
        manifest_id = manifest.id
        db.session.rollback()  # the process "dies" after the uploads, before the commit
        db.session.remove()
    assert run_jobs(app)[1] == 0
    with app.app_context():
        assert db.session.get(Job, manifest_id).status == "done"  # type: ignore[union-attr]
        db.session.remove()
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "archived"
    listed = s3(moto_endpoint).list_object_versions(Bucket=bucket, Prefix="cdg/")
    keys = [v["Key"] for v in listed.get("Versions", [])]
    assert len(keys) == len(set(keys))  # one version of each object: nothing written twice
