"""Peppol BIS Billing 3.0: UBL build and parse, validation, discovery, transport.

Modules, each usable on its own:

- ``build``: canonical :class:`~sync_daemon.kernel.models.Invoice` → UBL Invoice or
  CreditNote (builder functions per document part + one lxml renderer);
- ``parse``: UBL (any namespace prefixes) → canonical invoice; ``safexml`` is the
  hardened parser underneath (no DTD, no entities, no network, size limit);
- ``validate``: UBL 2.1 XSD + official CEN and PEPPOL Schematron (XSLT via
  saxonche), compiled once per process (``PEPPOL_RULES_DIR``);
- ``discovery``: SML (DNS NAPTR) and SMP lookups → can receive / cannot / unknown;
- ``transport``: access-point clients (REST provider, folder drop/pick-up);
- ``connector``: the daemon's connector (``create(ctx)``), InvoiceSink and
  EInvoiceSource;
- ``sandbox``: fake access point, SMP and SML on 127.0.0.1;
- ``cli``: ``crm-sync peppol validate|lookup``.
"""
