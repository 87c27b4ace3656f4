"""liftlake models [--json]: every model of the catalog with its family;
--versions: the trained versions (aliases champion / challenger, days, rows, the gate's value);
--history: the promotion history (every move of an alias). --model NAME: one model only."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("--versions", action="store_true", help="list the trained versions and their aliases")
        parser.add_argument("--history", action="store_true", help="list every promotion (alias move)")

    def body(ctx):
        from liftlake.lib.pipelines import models

        models.run(ctx)

    return run_job("models", __doc__, body, argv, days=False, extend_parser=extend, model_flag=True,
                   json_output=True)


if __name__ == "__main__":
    sys.exit(main())
