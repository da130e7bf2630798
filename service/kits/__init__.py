"""Contractual kits: generation of the six documents, issuing, downloads."""
