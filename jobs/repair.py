"""liftlake repair: finish the table batches of jobs killed inside their commit loop (a job's
tables commit one after the other at its end; a kill between two commits leaves a manifest under
<warehouse>/_commits/ and the tables it names are put back as they were before that job)."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines import repair

        repair.run(ctx)

    return run_job("repair", __doc__, body, argv, days=False)


if __name__ == "__main__":
    sys.exit(main())
