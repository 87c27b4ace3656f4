"""liftlake models [--json]: every model in the registry with its family."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines import models

        models.run(ctx)

    return run_job("models", __doc__, body, argv, days=False, json_output=True)


if __name__ == "__main__":
    sys.exit(main())
