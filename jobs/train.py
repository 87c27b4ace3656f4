"""spark-submit jobs/train.py --ds 2026-11-20 --model dcmt [--set train.launcher=horovod --set train.num_processes=2]

Trains on the window of days ending at --ds (pinned table versions), saves an artifact in the model
store, evaluates it on the test split and moves the model's CURRENT pointer if the gate passes."""
import json
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines.train import train

        summary = train(ctx, ctx.days[-1])
        if ctx.args.json:
            print(json.dumps({k: v for k, v in summary.items() if k != "result"}, default=float))

    return run_job("train", __doc__, body, argv, default_days_from_quickstart=True, uses_model=True, model_flag=True,
                   json_output=True)


if __name__ == "__main__":
    sys.exit(main())
