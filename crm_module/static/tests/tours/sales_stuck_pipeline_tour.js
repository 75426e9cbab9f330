/** @odoo-module **/
/*
 * A salesperson opens the pipeline, keeps the stuck opportunities only and opens
 * one: the Pipeline Insights tab says how long it sits in its stage, the Customer
 * Summary tab shows the customer's Peppol readiness and finance figures.
 * Data: crm_module/tests/test_tours.py (TestTourSalesPipeline).
 */
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

registry.category("web_tour.tours").add("crm_module_sales_stuck_pipeline", {
    url: "/odoo",
    steps: () => [
        stepUtils.showAppsMenuItem(),
        {
            content: "Open the CRM app",
            trigger: ".o_app[data-menu-xmlid='crm.crm_menu_root']",
            run: "click",
        },
        {
            content: "The pipeline shows the fresh and the stuck opportunity",
            trigger: ".o_kanban_record:contains('Tour Fresh Deal')",
        },
        {
            content: "The stuck card carries its badge",
            trigger:
                ".o_kanban_record:contains('Tour Stuck Deal') .badge:contains('Stuck for')",
        },
        {
            content: "Open the search options",
            trigger: ".o_control_panel_actions .o_searchview_dropdown_toggler",
            run: "click",
        },
        {
            content: "Keep the stuck opportunities only",
            trigger: ".o_filter_menu .dropdown-item:contains('Stuck')",
            run: "click",
        },
        {
            content: "Close the search options",
            trigger: ".o_control_panel_actions .o_searchview_dropdown_toggler",
            run: "click",
        },
        {
            content: "The filter is applied",
            trigger: ".o_searchview_facet:contains('Stuck')",
        },
        {
            content: "The fresh opportunity is filtered out",
            trigger:
                ".o_kanban_renderer:not(:has(.o_kanban_record:contains('Tour Fresh Deal')))",
        },
        {
            content: "Open the stuck opportunity",
            trigger: ".o_kanban_record:contains('Tour Stuck Deal')",
            run: "click",
        },
        {
            content: "Open the Pipeline Insights tab",
            trigger: ".o_form_view .o_notebook .nav-link:contains('Pipeline Insights')",
            run: "click",
        },
        {
            content: "Time in stage: 45 days, flagged stuck",
            trigger: ".o_field_widget[name=days_in_stage]:contains('45')",
        },
        {
            content: "The stuck flag is ticked",
            trigger: ".o_field_widget[name=is_stuck] input:checked",
        },
        {
            content: "Open the Customer Summary tab",
            trigger: ".o_form_view .o_notebook .nav-link:contains('Customer Summary')",
            run: "click",
        },
        {
            content: "Peppol readiness of the customer",
            trigger: ".o_field_widget[name=customer_peppol_readiness]:contains('Can receive')",
        },
        {
            content: "Participant that answered the Peppol lookup",
            trigger: ".o_field_widget[name=customer_peppol_participant_id]:contains('0208:0447123478')",
        },
        {
            content: "Open receivable of the customer",
            trigger: ".o_field_widget[name=customer_receivable]:contains('1,250.00')",
        },
        {
            content: "All of it overdue",
            trigger: ".o_field_widget[name=customer_overdue]:contains('1,250.00')",
        },
    ],
});
