"""liftlake housekeeping [--dry-run]: compact each table's small files (OPTIMIZE), then remove
unreferenced Delta files, stale staging folders, unused train caches and old checkpoints under the
warehouse (retention and compaction: the housekeeping section of conf/base.yaml). Model versions and CURRENT pointers are never touched."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")

    def body(ctx):
        from liftlake.lib.pipelines import housekeeping

        housekeeping.run(ctx)

    return run_job("housekeeping", __doc__, body, argv, extend_parser=extend, days=False)


if __name__ == "__main__":
    sys.exit(main())
