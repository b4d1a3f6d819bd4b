"""``python -m hicl_retrieval.cli``."""

import sys

from . import main

sys.exit(main())
