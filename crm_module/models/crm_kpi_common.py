from odoo import models, tools
from odoo.tools import SQL


class CrmKpiMixin(models.AbstractModel):
    """SQL-view report whose ``_median_fields`` aggregate as a true median.

    The read_group of the ORM knows sums and averages but no median; the fields
    listed here are aggregated with ``percentile_cont(0.5)`` at any grouping, so
    the pivot shows the median of the underlying rows, not a mean of medians.
    """

    _name = "crm.kpi.mixin"
    _description = "CRM KPI Report"
    _auto = False

    #: report field -> nothing; the field's own column holds the values
    _median_fields = ()

    def _kpi_query(self):
        """The SELECT statement of the view."""
        raise NotImplementedError

    def init(self):
        if self._abstract:
            return
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(
            SQL(
                "CREATE OR REPLACE VIEW %s AS (%s)",
                SQL.identifier(self._table),
                SQL(self._kpi_query()),
            )
        )

    def _read_group_select(self, aggregate_spec, query):
        fname = aggregate_spec.split(":")[0]
        if fname in self._median_fields:
            sql_field = self._field_to_sql(self._table, fname, query)
            return SQL("percentile_cont(0.5) WITHIN GROUP (ORDER BY %s)", sql_field)
        return super()._read_group_select(aggregate_spec, query)
