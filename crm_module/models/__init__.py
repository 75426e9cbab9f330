from . import crm_sync_ownership
from . import crm_sync_backend
from . import crm_sync_run
from . import crm_sync_link
from . import crm_sync_issue_suggestion
from . import crm_sync_issue
from . import res_partner
from . import crm_lead
