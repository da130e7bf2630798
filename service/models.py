"""Imports every model so that metadata (and Alembic) sees all tables."""

from service.accounts.models import ApiToken, User
from service.kits.models import Kit, KitCounter, KitDocument
from service.reference.models import Cdg, Convention, Employer

__all__ = ["ApiToken", "Cdg", "Convention", "Employer", "Kit", "KitCounter", "KitDocument", "User"]
