"""``python -m janus.cli``."""

import sys

from janus.cli import main

sys.exit(main())
