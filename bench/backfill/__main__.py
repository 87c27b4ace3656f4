"""``python -m bench.backfill``: runs bench.backfill.cli.main with the command line's flags."""
import sys

from bench.backfill.cli import main

sys.exit(main())
