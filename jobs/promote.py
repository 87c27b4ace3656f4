"""liftlake promote --model NAME --version vNNNN: make that version the champion (CURRENT), the
version scoring uses; recorded in the model's promotion history."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("--version", required=True, help="the version to make the champion")

    def body(ctx):
        from liftlake.lib.pipelines import models

        models.promote(ctx, ctx.args.version)

    return run_job("promote", __doc__, body, argv, days=False, extend_parser=extend, model_flag=True)


if __name__ == "__main__":
    sys.exit(main())
