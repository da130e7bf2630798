"""Server-rendered pages (French)."""
