/** @odoo-module **/
/*
 * A privacy officer records an access request, downloads the personal data
 * bundle, then processes an erasure of the same person and reads on the
 * retained invoice why it was kept.
 * Data: crm_module/tests/test_tours.py (TestTourPrivacyOfficer).
 */
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

function fillRequest(requestType) {
    return [
        {
            content: `Request type: ${requestType}`,
            trigger: ".o_field_widget[name=request_type] select",
            run: `select "${requestType}"`,
        },
        {
            content: "The data subject",
            trigger: ".o_field_widget[name=partner_id] input",
            run: "edit Marie Exemple",
        },
        {
            content: "Pick the partner",
            trigger: ".o-autocomplete--dropdown-item:contains('Marie Exemple')",
            run: "click",
        },
        {
            content: "Note how the identity was checked",
            trigger: ".o_field_widget[name=identity_note] textarea",
            run: "edit Called back on the number of the customer file",
        },
        {
            content: "Identity verified",
            trigger: ".o_statusbar_buttons button[name=action_verify_identity]",
            run: "click",
        },
        {
            content: "Process the request",
            trigger: ".o_statusbar_buttons button[name=action_process]",
            run: "click",
        },
        {
            content: "Confirm",
            trigger: ".modal .modal-footer .btn-primary",
            run: "click",
        },
        {
            content: "The request is done",
            trigger: ".o_statusbar_status .o_arrow_button_current:contains('Done')",
        },
    ];
}

registry.category("web_tour.tours").add("crm_module_privacy_requests", {
    url: "/odoo",
    steps: () => [
        stepUtils.showAppsMenuItem(),
        {
            content: "Open the Contacts app",
            trigger: ".o_app[data-menu-xmlid='contacts.menu_contacts']",
            run: "click",
        },
        {
            content: "Open the Privacy menu",
            trigger: ".o_menu_sections button[data-menu-xmlid='crm_module.crm_privacy_menu']",
            run: "click",
        },
        {
            content: "Open the data subject requests",
            trigger: ".dropdown-item[data-menu-xmlid='crm_module.crm_privacy_request_menu']",
            run: "click",
        },
        {
            content: "Record a new request",
            trigger: ".o_list_button_add",
            run: "click",
        },
        ...fillRequest("access"),
        {
            content: "Download the personal data bundle from the chatter",
            trigger:
                ".o-mail-Message:contains('Personal data export generated') .o-mail-AttachmentCard:contains('personal-data') button[title=Download]",
            async run() {
                const response = await fetch(this.anchor.dataset.downloadUrl);
                const bytes = new Uint8Array(await response.arrayBuffer());
                const signature = String.fromCharCode(...bytes.slice(0, 2));
                if (!response.ok || signature !== "PK") {
                    throw new Error(
                        `the bundle download gave HTTP ${response.status}, ` +
                            `starting with ${JSON.stringify(signature)} instead of a zip`
                    );
                }
            },
        },
        {
            content: "Record a second request",
            trigger: ".o_form_button_create",
            run: "click",
        },
        ...fillRequest("erasure"),
        {
            content: "The proof of erasure names the invoice kept under legal hold",
            trigger: ".o_field_widget[name=erasure_scope]:contains('legal_hold')",
        },
        stepUtils.showAppsMenuItem(),
        {
            content: "Open the Invoicing app",
            trigger: ".o_app[data-menu-xmlid='account.menu_finance']",
            run: "click",
        },
        {
            content: "Customers menu",
            trigger: ".o_menu_sections button[data-menu-xmlid='account.menu_finance_receivables']",
            run: "click",
        },
        {
            content: "Customer invoices",
            trigger: ".dropdown-item[data-menu-xmlid='account.menu_action_move_out_invoice_type']",
            run: "click",
        },
        {
            content: "Open the invoice of the erased customer",
            trigger: ".o_data_row:contains('Marie Exemple') td[name=name]",
            run: "click",
        },
        {
            content: "The invoice is under legal hold",
            trigger: ".o_form_view .alert-warning:contains('Legal hold until')",
        },
        {
            content: "and says why it was kept",
            trigger: ".o_field_widget[name=crm_legal_hold_note]:contains('requires keeping invoices')",
        },
    ],
});
