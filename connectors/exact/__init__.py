"""Exact Online connector: OAuth2 client, OData paging, mapping and a local sandbox."""
