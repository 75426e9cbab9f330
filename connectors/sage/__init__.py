"""Sage connectors: Sage Accounting v3.1 (REST) and Sage X3 (SOAP), with sandboxes."""
