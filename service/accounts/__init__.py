"""Accounts: users, roles and API tokens."""
