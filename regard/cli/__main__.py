"""`python -m regard.cli ...`, as the `regard` script."""

import sys

from regard.cli.main import main

sys.exit(main())
