"""Scheduled reports: definitions, rendering and the runner that delivers them."""
