"""Signing and hashing helpers of the GDPR ledger.

Every signature and digest is keyed with the database secret (``database.secret``)
through :func:`odoo.tools.hmac`, so a token or a ledger hash cannot be forged
without access to that secret.
"""

import json

from odoo.tools import consteq, hmac

#: scopes keep the signatures of different uses apart
SCOPE_CONFIRM = "crm_module.consent_confirm"
SCOPE_UNSUBSCRIBE = "crm_module.consent_unsubscribe"
SCOPE_LEDGER = "crm_module.consent_ledger"
SCOPE_SUBJECT = "crm_module.data_subject"
SCOPE_EVIDENCE = "crm_module.consent_evidence"


def sign(env, scope, message):
    """Return the hex HMAC of ``message`` for ``scope`` with the database secret."""
    return hmac(env(su=True), scope, message)


def check_signature(env, scope, message, signature):
    """Tell in constant time whether ``signature`` signs ``message``."""
    if not signature or not isinstance(signature, str):
        return False
    return consteq(sign(env, scope, message), signature)


def canonical_json(values):
    """Serialise ``values`` the same way every time, for hashing."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)


def subject_hash(env, email_key):
    """Return a keyed digest standing for a data subject's e-mail in proofs."""
    return sign(env, SCOPE_SUBJECT, email_key or "")
