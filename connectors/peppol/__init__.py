"""Peppol BIS Billing 3.0: UBL build and parse, validation, discovery, transport."""
