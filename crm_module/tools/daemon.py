"""Access guard shared by the RPC methods called by the sync daemon."""

from odoo import fields
from odoo.exceptions import AccessError, ValidationError

DAEMON_GROUP = "crm_module.crm_module_group_sync_daemon"
ADMIN_GROUP = "crm_module.crm_module_group_sync_admin"
#: largest page the daemon may read in one call
MAX_PAGE_SIZE = 500


def check_daemon_access(env):
    """Raise AccessError unless the user is the sync daemon or a sync administrator."""
    user = env.user
    if env.su or user.has_group(DAEMON_GROUP) or user.has_group(ADMIN_GROUP):
        return
    raise AccessError(
        env._(
            "User %(user)s may not call the synchronisation API: it is reserved to "
            "the groups 'Sync daemon (technical)' and 'Sync administrator'.",
            user=user.login,
        )
    )


def daemon_page_limit(env, limit):
    """Return a page size between 1 and MAX_PAGE_SIZE, rejecting non-numbers."""
    try:
        if isinstance(limit, bool):
            raise TypeError(limit)
        limit = int(limit)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValidationError(
            env._("The argument 'limit' must be a number, got %r.", limit)
        ) from error
    return max(1, min(limit, MAX_PAGE_SIZE))


def require_list(env, vals_list, what):
    """Raise ValidationError unless a daemon batch is a list (or tuple)."""
    if not isinstance(vals_list, (list, tuple)):
        raise ValidationError(
            env._(
                "%(what)s: expected a list, got %(value)r.", what=what, value=vals_list
            )
        )


def require_keys(env, vals, keys, what):
    """Raise ValidationError naming the first key missing from a daemon payload."""
    if not isinstance(vals, dict):
        raise ValidationError(
            env._("%(what)s: expected a dict, got %(value)r.", what=what, value=vals)
        )
    missing = [
        key
        for key in keys
        if vals.get(key) in (None, "")
        or (isinstance(vals.get(key), str) and not vals[key].strip())
    ]
    if missing:
        raise ValidationError(
            env._(
                "%(what)s: missing value for %(keys)s.",
                what=what,
                keys=", ".join(missing),
            )
        )


def parse_utc(env, value, field, what):
    """Return a naive UTC datetime from a "YYYY-MM-DD HH:MM:SS" string.

    Empty values give False; anything else that does not parse raises a
    ValidationError naming the payload and the field.
    """
    if value in (None, False, ""):
        return False
    try:
        return fields.Datetime.to_datetime(value)
    except (TypeError, ValueError) as error:
        raise ValidationError(
            env._(
                "%(what)s: field %(field)s must be a UTC date 'YYYY-MM-DD HH:MM:SS', "
                "got %(value)r.",
                what=what,
                field=field,
                value=value,
            )
        ) from error


def to_utc_string(value):
    """Return a datetime as the "YYYY-MM-DD HH:MM:SS" string of the API."""
    return fields.Datetime.to_string(value) if value else False


def check_selection(env, value, allowed, field, what):
    """Raise ValidationError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValidationError(
            env._(
                "%(what)s: field %(field)s must be one of %(allowed)s, got %(value)r.",
                what=what,
                field=field,
                allowed=", ".join(sorted(allowed)),
                value=value,
            )
        )


def to_int(env, value, field, what):
    """Return ``value`` as an int or raise ValidationError naming the field.

    ``True`` or ``7.9`` are refused: ``int()`` would make them record 1 and 7.
    """
    try:
        if isinstance(value, bool) or (
            isinstance(value, float) and not value.is_integer()
        ):
            raise ValueError(value)
        return int(value)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValidationError(
            env._(
                "%(what)s: field %(field)s must be an integer id, got %(value)r.",
                what=what,
                field=field,
                value=value,
            )
        ) from error


def to_text(env, value, field, what):
    """Return ``value`` (text or a whole number) as text storable in PostgreSQL.

    Objects and lists would be stored as their Python repr, and U+0000 fails the
    whole transaction with a message naming neither the item nor the field.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        ok = False
    else:
        value = str(value)
        ok = "\x00" not in value
    if not ok:
        raise ValidationError(
            env._(
                "%(what)s: field %(field)s must be text without NUL characters, "
                "got %(value)r.",
                what=what,
                field=field,
                value=value,
            )
        )
    return value
