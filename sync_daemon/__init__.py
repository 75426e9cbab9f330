"""Sync daemon: reconciles Odoo customers and invoices with Exact, Sage and Peppol."""

__version__ = "0.1.0"
