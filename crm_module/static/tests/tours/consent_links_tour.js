/** @odoo-module **/
/*
 * A prospect follows the links of our mails: first the double opt-in link, later
 * the unsubscribe link. Both pages are public and plain HTML (no Odoo script), so
 * the tour runs on the public login page and opens the link in a frame, the way
 * a mail client would show it; the link itself is given by the Python test in
 * the query string (?crm_link=...). Data: crm_module/tests/test_tours.py
 * (TestTourConsentLinks).
 */
import { registry } from "@web/core/registry";

const FRAME = "iframe.o_crm_consent_link";

function followLinkSteps(button, answer) {
    return [
        {
            content: "Open the link of the mail",
            trigger: "body",
            run() {
                const link = new URLSearchParams(window.location.search).get("crm_link");
                if (!link || !link.startsWith("/crm/consent/")) {
                    throw new Error(`no consent link in the tour URL: ${link}`);
                }
                const frame = document.createElement("iframe");
                frame.className = "o_crm_consent_link";
                frame.style.cssText = "position:fixed;inset:0;width:100%;height:100%;z-index:9999;background:white";
                frame.src = link;
                document.body.appendChild(frame);
            },
        },
        {
            content: `The page asks before acting: "${button}"`,
            trigger: `${FRAME}:iframe form[method=post] button:contains('${button}')`,
            run: "click",
        },
        {
            content: "The page confirms what was done",
            trigger: `${FRAME}:iframe p:contains('${answer}')`,
        },
    ];
}

registry
    .category("web_tour.tours")
    .add("crm_module_consent_confirm", {
        steps: () => followLinkSteps("Yes, I confirm", "your subscription is confirmed"),
    })
    .add("crm_module_consent_unsubscribe", {
        steps: () => followLinkSteps("Unsubscribe", "you will no longer receive"),
    });
