"""liftlake rollback --model NAME: the champion (CURRENT) goes back to the version that was champion
before the current one was promoted; recorded in the promotion history. Twice steps back twice."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines import models

        models.rollback(ctx)

    return run_job("rollback", __doc__, body, argv, days=False, model_flag=True)


if __name__ == "__main__":
    sys.exit(main())
