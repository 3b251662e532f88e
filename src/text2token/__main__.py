"""``python -m text2token`` — the same as the ``text2token`` command."""

from .cli import run

if __name__ == "__main__":
    run()
