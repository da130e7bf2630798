"""Request shapes of subscription requests (pydantic), shared by the API and the pages."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from service.reference.schemas import EmployerIn


class SubscriptionIn(EmployerIn):
    """The employer fields of `POST /employers`, plus who to answer."""

    contact_name: str = Field(min_length=2, max_length=200)
    contact_email: EmailStr


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    token: str = Field(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    accept: bool
    reason: str | None = Field(default=None, max_length=1000)
    version: int | None = Field(default=None, ge=1, le=2_147_483_647)
