from . import test_identifiers
from . import test_partner_duplicates
from . import test_customer_summary
from . import test_sync_backend
from . import test_sync_api
from . import test_security
from . import test_peppol
