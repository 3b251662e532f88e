"""``python -m text2token.cli`` (what ``accelerate launch -m text2token.cli`` runs): the ``text2token`` command."""

from . import run

run()
