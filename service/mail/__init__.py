"""E-mails to employers: an outbox folder by default, SMTP through MAIL_URL."""
