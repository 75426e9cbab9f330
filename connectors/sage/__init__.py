"""Sage connectors: Sage Accounting v3.1 (REST) and Sage X3 (SOAP), with sandboxes.

Modules, by role:

- ``settings``: pydantic models of the two backend sections (validated once).
- ``errors``: the Sage error classes on top of the kernel's retryable/permanent tree.
- ``retry``: the bounded, jittered tenacity policy shared by both clients.
- Sage Accounting v3.1: ``oauth`` (consent, rotating refresh tokens through the
  kernel token store), ``accounting_client`` (HTTP, ``X-Business``, paging, error
  arrays), ``accounting_mapping`` (pure payload mapping), ``accounting`` (the
  connector, entry point ``sage_accounting``).
- Sage X3: ``x3_client`` (zeep on the shipped WSDL, offline, lxml envelopes for
  encoded arrays, result interpretation), ``x3_payloads`` (BPC/SIH object XML),
  ``x3`` (the connector, entry point ``sage_x3``), ``wsdl/`` (WSDL and schema).
- Sandboxes on 127.0.0.1: ``sandbox_accounting``, ``sandbox_x3``, their shared
  plumbing ``sandbox_http`` and the seed data ``seed``.

Only :mod:`sync_daemon.kernel` is imported from the rest of the project.
"""
