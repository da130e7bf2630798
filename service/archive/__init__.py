"""The CDG archive: countersigned copies in object storage, under retention, checksum verified."""
