"""liftlake report [--quick] [--set report.seeds=[1,2,3,4,5]] [--set report.exposures=50000]

Checks each paper's headline claim on the simulator against its truth (mean +- std over seeds) and
writes reports/report.md with PNG figures. ``--quick``: the size CI runs (conf/report-quick.yaml,
under any --conf / --set given), minutes instead of an hour. Benchmarks (speed) are `python -m bench.run`."""
import os
import sys

from liftlake.lib.cli.runner import run_job
from liftlake.lib.config.loader import conf_dir

QUICK_FLAG = "--quick"


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines.report import run_report

        print(run_report(ctx))

    def quick_flag(parser):
        parser.add_argument(QUICK_FLAG, action="store_true",
                            help="the report at CI's size: conf/report-quick.yaml under any --conf / --set")

    args = list(sys.argv[1:] if argv is None else argv)
    if QUICK_FLAG in args:  # the preset is the first --conf layer, so the command line's own still win
        args = ["--conf", os.path.join(conf_dir(), "report-quick.yaml"), *(a for a in args if a != QUICK_FLAG)]
    return run_job("report", __doc__, body, args, uses_model=True, extend_parser=quick_flag)


if __name__ == "__main__":
    sys.exit(main())
