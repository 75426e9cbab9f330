from odoo.tests import HttpCase, tagged

#: url_open only posts non-empty data
POST = {"confirm": "1"}


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestConsentRoutes(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Consent = cls.env["crm.consent"]
        cls.newsletter = cls.env.ref("crm_module.crm_consent_purpose_newsletter")

    def _token(self, consent):
        return self.Consent._crm_confirm_token(consent, consent.confirmation_nonce)

    def test_confirm_route_is_single_use_and_stores_evidence(self):
        consent = self.Consent._crm_request_opt_in(
            "web.visitor@example.com", self.newsletter
        )
        old_token = self._token(consent)
        consent = self.Consent._crm_request_opt_in(
            "web.visitor@example.com", self.newsletter
        )
        token = self._token(consent)
        url = f"/crm/consent/confirm/{token}"
        # a GET (mail scanner, link preview) confirms nothing
        response = self.url_open(url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(consent.state, "pending")
        response = self.url_open(f"/crm/consent/confirm/{old_token}", data=POST)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(consent.state, "pending")
        response = self.url_open(
            url, data=POST, headers={"User-Agent": "TestBrowser/1"}
        )
        self.assertEqual(response.status_code, 200)
        consent.invalidate_recordset()
        self.assertEqual(consent.state, "granted")
        confirm = consent.event_ids.filtered(lambda event: event.kind == "confirm")
        self.assertEqual(confirm.user_agent, "TestBrowser/1")
        self.assertTrue(confirm.ip_address)
        response = self.url_open(url, data=POST)
        self.assertEqual(response.status_code, 200)
        self.assertIn("already", response.text)
        self.assertEqual(
            len(consent.event_ids.filtered(lambda e: e.kind == "confirm")), 1
        )

    def test_unsubscribe_route_withdraws_for_the_subject(self):
        partner = self.env["res.partner"].create(
            {"name": "Reader", "email": "reader@example.com"}
        )
        twin = self.env["res.partner"].create(
            {"name": "Reader at work", "email": "Reader@Example.com"}
        )
        for each in partner | twin:
            self.Consent._crm_record_event(each, self.newsletter, "grant")
        url = partner._crm_unsubscribe_url(self.newsletter)
        path = url[url.index("/crm/") :]
        self.assertEqual(self.url_open(path[:-4] + "0000", data=POST).status_code, 400)
        self.assertEqual(self.url_open(path).status_code, 200)
        self.assertEqual(partner.crm_consent_ids.state, "granted")
        self.assertEqual(self.url_open(path, data=POST).status_code, 200)
        (partner | twin).invalidate_recordset()
        self.assertEqual(partner.crm_consent_ids.state, "withdrawn")
        self.assertEqual(twin.crm_consent_ids.state, "withdrawn")
        event = partner.crm_consent_ids.event_ids.filtered(
            lambda event: event.kind == "withdraw"
        )
        self.assertEqual(event.source, "email_link")
        self.assertTrue(
            self.env["mail.blacklist"].search([("email", "=", "reader@example.com")])
        )
