"""`python -m pipeline.cli`: the same as the `edgeline` console script."""

import sys

from pipeline.cli.main import main

sys.exit(main())
