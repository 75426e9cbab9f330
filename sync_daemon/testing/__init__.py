"""Test helpers shipped with the daemon: a fake Odoo and a test-double connector.

They serve the daemon's own tests, the connectors' tests, the crash test and the
benchmarks; nothing in production imports them.
"""
