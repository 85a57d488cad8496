"""`python -m tools.assets ...` (tools/assets/cli.py)."""

import sys

from tools.assets.cli import main

sys.exit(main())
