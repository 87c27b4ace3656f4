"""liftlake driver --socket PATH [--idle-timeout SECONDS] [--conf FILE]...

A warm Spark driver for pipeline runs (lib/cli/warm_driver.py): starts the session with the
config given, then runs the steps sent to PATH (``LIFTLAKE_DRIVER=PATH liftlake <step> ...``, the
daily DAG's tasks) one after another in it, until a stop request or the idle timeout."""
import os
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("--socket", help="the Unix socket to serve the steps at (required)")
        parser.add_argument("--idle-timeout", type=float, default=1800.0,
                            help="exit after this many seconds without a request (default 1800)")

    def body(ctx):
        from liftlake.lib.cli.runner import ConfigError, hold_warm_session
        from liftlake.lib.cli.warm_driver import DRIVER_ENV, DriverRequestError, check_socket_path, serve

        if not ctx.args.socket:
            raise ConfigError("--socket: required, the Unix socket to serve the steps at")
        if not 0 < ctx.args.idle_timeout <= 7 * 86400:
            raise ConfigError(f"--idle-timeout {ctx.args.idle_timeout}: must be in (0, 604800] seconds")
        try:
            check_socket_path(ctx.args.socket)
        except DriverRequestError as exc:
            raise ConfigError(f"--socket: {exc}") from None
        os.environ.pop(DRIVER_ENV, None)  # the steps run here, not forwarded again
        spark = hold_warm_session(ctx)
        serve(ctx.args.socket, ctx.args.idle_timeout, spark.sparkContext.cancelAllJobs)

    return run_job("driver", __doc__, body, argv, days=False, extend_parser=extend)


if __name__ == "__main__":
    sys.exit(main())
