"""Public pages of the consent ledger: confirm a sign-up, withdraw a consent.

A GET only shows a page with a button, so that mail scanners following links do
not confirm or withdraw anything; the POST of that button acts. The signed token
in the URL is the only credential.
"""

from markupsafe import Markup, escape

from odoo import http
from odoo.http import request

PAGE = Markup(
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>%s</title></head>"
    "<body style='font-family:sans-serif;max-width:40em;margin:2em auto'>"
    "<h1>%s</h1>%s</body></html>"
)


def _page(title, content, status=200):
    html = PAGE % (title, title, content)
    return request.make_response(
        str(html),
        headers=[("Content-Type", "text/html; charset=utf-8")],
        status=status,
    )


def _button(label):
    return Markup("<form method='post'><button type='submit'>%s</button></form>") % (
        label,
    )


def _evidence():
    httprequest = request.httprequest
    return {
        "ip_address": httprequest.remote_addr,
        "user_agent": (httprequest.user_agent.string or "")[:500],
    }


class ConsentController(http.Controller):
    @http.route(
        "/crm/consent/confirm/<string:token>",
        type="http",
        auth="public",
        methods=["GET", "POST"],
        csrf=False,
        sitemap=False,
    )
    def crm_consent_confirm(self, token, **kwargs):
        env = request.env
        title = env._("Confirm your subscription")
        if request.httprequest.method == "GET":
            return _page(title, _button(env._("Yes, I confirm")))
        result, _consent = (
            env["crm.consent"].sudo()._crm_confirm(token, evidence=_evidence())
        )
        messages = {
            "confirmed": env._("Thank you, your subscription is confirmed."),
            "already_confirmed": env._("Your subscription was already confirmed."),
            "expired": env._("This link has expired; please sign up again."),
            "invalid": env._("This link is not valid (any more)."),
        }
        status = 200 if result in ("confirmed", "already_confirmed") else 400
        return _page(title, Markup("<p>%s</p>") % messages[result], status=status)

    @http.route(
        "/crm/consent/unsubscribe/<int:partner_id>/<int:purpose_id>/<string:token>",
        type="http",
        auth="public",
        methods=["GET", "POST"],
        csrf=False,
        sitemap=False,
    )
    def crm_consent_unsubscribe(self, partner_id, purpose_id, token, **kwargs):
        env = request.env
        title = env._("Unsubscribe")
        partner = env["res.partner"].sudo().browse(partner_id).exists()
        purpose = env["crm.consent.purpose"].sudo().browse(purpose_id).exists()
        if (
            not partner
            or (purpose_id and not purpose)
            or not partner._crm_check_unsubscribe_token(purpose, token)
        ):
            return _page(
                title,
                Markup("<p>%s</p>") % env._("This link is not valid."),
                status=400,
            )
        what = purpose.name if purpose else env._("all our marketing messages")
        if request.httprequest.method == "GET":
            question = Markup("<p>%s</p>") % env._(
                "Stop receiving %s and withdraw your consent?", what
            )
            return _page(title, question + _button(env._("Unsubscribe")))
        env["crm.consent"].sudo()._crm_withdraw(
            partner,
            purpose or None,
            source="email_link",
            evidence=_evidence(),
        )
        return _page(
            title,
            Markup("<p>%s</p>")
            % escape(env._("Done: you will no longer receive %s.", what)),
        )
