"""`python -m local.cloud up|down|status|serve` (see `local.cloud._cli`)."""

import sys

from local.cloud._cli import main

sys.exit(main())
