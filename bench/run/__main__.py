"""``python -m bench.run``: runs bench.run.cli.main with the command line's flags."""
import sys

from bench.run.cli import main

sys.exit(main())
