"""Signing in the browser: the collectivité's signatory, one-time codes, the signature made by
the service's signing CA and handed to the same verification as an uploaded return."""
