"""`python -m batchctl`, the same as the `batchctl` console script."""

from batchctl import main

raise SystemExit(main())
