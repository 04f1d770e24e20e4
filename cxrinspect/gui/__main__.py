"""``python -m cxrinspect.gui [FOLDER] [--model PATH]``."""

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
