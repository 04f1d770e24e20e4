"""The frozen app's one entry point: ``cxrinspect`` (every subcommand; the window without one) and,
when started through the ``cxrinspect-train`` link beside it, the training command."""

import multiprocessing
import os
import sys


def main() -> int:
    multiprocessing.freeze_support()  # DataLoader workers re-enter the frozen executable
    name = os.path.basename(sys.argv[0])
    if name.startswith("cxrinspect-train"):
        from cxrinspect.training.cli import main as run
    else:
        from cxrinspect.cli import main as run
    return run()


if __name__ == "__main__":
    sys.exit(main())
