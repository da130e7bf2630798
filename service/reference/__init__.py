"""Reference data: CDGs, conventions de participation, employers, and the rules they obey."""
