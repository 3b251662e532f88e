"""``python -m text2token`` — the same as the ``text2token`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
