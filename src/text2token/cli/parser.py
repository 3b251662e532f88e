"""The ``text2token`` argument parser: the program, its common options and the commands, whose arguments each
handler module adds (``add_<command>``), next to the code that reads them."""

from __future__ import annotations

import argparse

from . import encode, evaluate, postprocess, retrieve, serve, train

EXAMPLES = """examples:
  text2token train --config configs/demo.yaml --output runs/demo
  text2token train --output runs/demo --resume                     # continue the run as it was configured
  text2token train --objective simcse --output runs/simcse simcse.steps=50   # the LLM2Vec baseline
  text2token encode --model runs/demo/model --input texts.txt --output emb.npy --normalize
  text2token explain --model runs/demo/model "The cat sat on the mat."
  text2token eval --model runs/demo/model --suite demo --baseline default
  text2token index --model runs/demo/model --corpus docs.jsonl --output runs/demo/index
  text2token search --index runs/demo/index --query "interest rates"
  text2token postprocess runs/demo/model                                 # refit the isotropy correction in place
  text2token postprocess default --output runs/free                      # a training-free embedder folder

several jobs on one machine:
  text2token lets idle OpenMP threads spin only briefly (GOMP_SPINCOUNT=10000 unless you set it or OMP_WAIT_POLICY),
  so two jobs on the same cores share them (~2.3x each, not ~8x); OMP_NUM_THREADS=N gives a job N threads.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that keeps the descriptions' line breaks and shows every option's default value (flags and
    options without one — off, or required — show none)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr (errors still)")
    p = argparse.ArgumentParser(
        prog="text2token",
        description="Turn a decoder-only LM into a text embedder by token target prediction (Text2Token).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, summary, description):
        return sub.add_parser(
            name, help=summary, description=f"{summary}.\n\n{description}", parents=[common], formatter_class=_Formatter
        )

    train.add_train(command)
    encode.add_encode(command)
    encode.add_explain(command)
    retrieve.add_index(command)
    retrieve.add_export(command)
    retrieve.add_search(command)
    train.add_report(command)
    train.add_analyze(command)
    postprocess.add_postprocess(command)
    evaluate.add_eval(command)
    serve.add_serve(command)
    return p
