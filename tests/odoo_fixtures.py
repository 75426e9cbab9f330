"""pytest fixtures for end-to-end tests against a real Odoo 18 with crm_module.

``odoo_server`` creates a throw-away database with the add-on, serves it on a free
127.0.0.1 port for the whole session and drops it afterwards. Without an Odoo 18
(see ``sync_daemon.odoo_runtime.find_odoo``) every test using it is skipped, with the
reason. ``odoo_env`` is an authenticated odoorpc client as admin.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from sync_daemon.odoo_runtime import OdooNotFound, OdooServer, find_odoo


@pytest.fixture(scope="session")
def odoo_server() -> Iterator[OdooServer]:
    try:
        runtime = find_odoo()
    except OdooNotFound as err:
        pytest.skip(f"skipped: {err}")
    with OdooServer(runtime) as server:
        yield server


@pytest.fixture(scope="session")
def odoo_admin(odoo_server: OdooServer):
    """An odoorpc client logged in as admin on the throw-away database."""
    import odoorpc

    url = urlparse(odoo_server.url)
    client = odoorpc.ODOO(url.hostname, protocol="jsonrpc", port=url.port, timeout=120)
    client.login(odoo_server.db, "admin", "admin")
    return client
