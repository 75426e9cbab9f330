"""Exact Online connector: OAuth2 client, OData paging, mapping and a local sandbox.

Modules, from the wire inwards:

- :mod:`.auth` — OAuth2 as Exact runs it (rotating single-use refresh tokens, the
  570 s rule, persist-before-use under the token store's lock);
- :mod:`.ratelimit` — minutely and daily limits per division, from the headers;
- :mod:`.client` — HTTP calls with timeouts, error classification, retries of
  retryable errors only, ``__next`` paging;
- :mod:`.mapping` — pure conversions between Exact rows and kernel records;
- :mod:`.connector` — ``create(ctx)``, the object the sync engine talks to;
- :mod:`.settings` — the documented keys of an Exact backend section;
- :mod:`.errors` — ``ExactError`` mixed into the kernel error tree;
- :mod:`.sandbox` — a faithful fake of Exact on 127.0.0.1 for demos and tests.

The package imports only ``sync_daemon.kernel`` from the project.
"""
