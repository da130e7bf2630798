"""PDF signatures: verifying an employer's signed return, countersigning it (PAdES).

A plain library: it knows nothing of Flask or of the service. Its errors derive from
`SigningError`; a refused return raises `Refused` with a machine code and a French message.
"""
