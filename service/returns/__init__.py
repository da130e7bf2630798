"""Signed returns: portal sessions, uploads and their verification, review, countersignature."""
