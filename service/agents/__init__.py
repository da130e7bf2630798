"""Agents join: memberships (the BAI), agents' accounts, beneficiaries, payroll, follow-up."""
