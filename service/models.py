"""Imports every model so that metadata (and Alembic) sees all tables."""

from service.accounts.models import ApiToken, User, WebSession
from service.agents.models import ActivationLink, AgentAccount, BeneficiaryDesignation, Membership
from service.archive.models import ArchiveRecord
from service.audit.models import AuditEvent, AuditHead
from service.campaigns.models import Campaign
from service.engine.models import Job, WorkerHeartbeat
from service.esign.models import Signatory, SigningRequest  # signing in the browser (hF)
from service.kits.models import Kit, KitCounter, KitDocument
from service.reference.models import Cdg, Convention, Employer
from service.returns.models import KitReturn
from service.subscriptions.models import Prerequisite, SubscriptionRequest

__all__ = [
    "ActivationLink",
    "AgentAccount",
    "ApiToken",
    "ArchiveRecord",
    "AuditEvent",
    "AuditHead",
    "BeneficiaryDesignation",
    "Campaign",
    "Cdg",
    "Convention",
    "Employer",
    "Job",
    "Kit",
    "KitCounter",
    "KitDocument",
    "KitReturn",
    "Membership",
    "Prerequisite",
    "Signatory",
    "SigningRequest",
    "SubscriptionRequest",
    "User",
    "WebSession",
    "WorkerHeartbeat",
]
