/** @odoo-module **/
/*
 * A sync administrator configures a new backend with a daily schedule and asks
 * for a run, then reads the latest run and settles a conflict of the Sync Issues
 * workbench by linking the partner the daemon suggests.
 * Data (the run, the conflict and its suggestions, written through the daemon
 * API): crm_module/tests/test_tours.py (TestTourSyncAdmin).
 */
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

function openMenu(sectionXmlid, menuXmlid, content) {
    return [
        {
            content: `${content}: open the menu section`,
            trigger: `.o_menu_sections button[data-menu-xmlid='${sectionXmlid}']`,
            run: "click",
        },
        {
            content,
            trigger: `.dropdown-item[data-menu-xmlid='${menuXmlid}']`,
            run: "click",
        },
    ];
}

registry.category("web_tour.tours").add("crm_module_sync_admin_workbench", {
    url: "/odoo",
    steps: () => [
        stepUtils.showAppsMenuItem(),
        {
            content: "Open the CRM app",
            trigger: ".o_app[data-menu-xmlid='crm.crm_menu_root']",
            run: "click",
        },
        ...openMenu(
            "crm.crm_menu_config",
            "crm_module.crm_sync_backend_menu",
            "Open the synchronisation backends"
        ),
        {
            content: "Create a backend",
            trigger: ".o_list_button_add",
            run: "click",
        },
        {
            content: "Name it",
            trigger: ".o_field_widget[name=name] input",
            run: "edit Sage X3 France",
        },
        {
            content: "Choose the kind of system",
            trigger: ".o_field_widget[name=kind] select",
            run: 'select "sage_x3"',
        },
        {
            content: "Run it once a day",
            trigger: ".o_field_widget[name=schedule_type] input[data-value='daily']",
            run: "click",
        },
        {
            content: "At half past three",
            trigger: ".o_field_widget[name=daily_time] input",
            run: "edit 03:30",
        },
        {
            content: "Save the backend",
            trigger: ".o_form_button_save",
            run: "click",
        },
        {
            content: "The backend is saved",
            trigger: ".o_form_view .o_form_saved .o_field_widget[name=name]",
        },
        {
            content: "Ask the daemon for a run now",
            trigger: ".o_statusbar_buttons button[name=action_run_now]",
            run: "click",
        },
        {
            content: "The form says that a run was requested",
            trigger: ".o_form_view .alert-info:contains('A run was requested')",
        },
        ...openMenu(
            "crm.crm_menu_config",
            "crm_module.crm_sync_run_menu",
            "Open the synchronisation runs"
        ),
        {
            content: "Open the latest run (runs are listed newest first)",
            trigger: ".o_list_renderer .o_data_row:first-child td[name=backend_id]",
            run: "click",
        },
        {
            content: "The run is the partial one of Exact Online Belgium",
            trigger: ".o_form_view .o_field_widget[name=backend_id]:contains('Exact Online Belgium')",
        },
        {
            content: "It reports one conflict",
            trigger: ".o_form_view .o_field_widget[name=count_conflicts]:contains('1')",
        },
        {
            content: "Open the Sync Issues workbench",
            trigger: ".o_menu_sections [data-menu-xmlid='crm_module.crm_sync_issue_menu']",
            run: "click",
        },
        {
            content: "Open the conflict",
            trigger: ".o_kanban_record:contains('EX-1042')",
            run: "click",
        },
        {
            content: "The daemon suggests the partner with the same VAT number",
            trigger:
                ".o_field_widget[name=suggestion_ids] .o_data_row:first-child:contains('Fictief Logistics NV'):contains('Same VAT number')",
        },
        {
            content: "Link the external record to the suggestion",
            trigger: ".o_statusbar_buttons button[name=action_link_suggestion]",
            run: "click",
        },
        {
            content: "The daemon will link it at its next run",
            trigger: ".o_form_view .alert-info:contains('The daemon will execute the requested action')",
        },
        {
            content: "The chosen partner is the suggestion",
            trigger: ".o_field_widget[name=chosen_partner_id] input",
            run() {
                if (this.anchor.value !== "Fictief Logistics NV") {
                    throw new Error(`chosen partner is "${this.anchor.value}"`);
                }
            },
        },
    ],
});
