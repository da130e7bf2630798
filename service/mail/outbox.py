"""Sending e-mails: `file://FOLDER` writes .eml files (the default), `smtp(s)://` sends them."""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlparse

SENDER = "Kits PSC prévoyance <ne-pas-repondre@psc.local>"


def build(to: str, subject: str, body: str, *, sender: str = SENDER) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="psc.local")
    message.set_content(body)
    return message


def send(mail_url: str, message: EmailMessage, *, timeout: float = 10) -> None:
    url = urlparse(mail_url)
    if url.scheme == "file":
        folder = Path(url.netloc + url.path)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bytes(message))
        tmp.rename(path)
        return
    if url.scheme not in ("smtp", "smtps"):
        raise ValueError(f"unsupported MAIL_URL scheme: {url.scheme}")
    cls = smtplib.SMTP_SSL if url.scheme == "smtps" else smtplib.SMTP
    port = url.port or (465 if url.scheme == "smtps" else 25)
    with cls(url.hostname or "localhost", port, timeout=timeout) as smtp:
        if url.username:
            smtp.login(unquote(url.username), unquote(url.password or ""))
        smtp.send_message(message)
