"""liftlake models [--json]: every model in the registry with its family."""
import json
import sys

from liftlake.lib.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.models.registry import list_models

        for entry in list_models():
            if ctx.args.json:
                print(json.dumps({"name": entry.name, "family": entry.family}))
            else:
                print(f"{entry.name:<14} {entry.family}")

    return run_job("models", __doc__, body, argv, days=False)


if __name__ == "__main__":
    sys.exit(main())
