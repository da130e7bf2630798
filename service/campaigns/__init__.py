"""Campaigns: a kit for every employer of a CDG that has none, one job per employer."""
