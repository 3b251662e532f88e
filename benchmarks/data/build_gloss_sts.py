#!/usr/bin/env python3
"""Build WordNetNounGlossSTS, a graded sentence-pair similarity (STS) dev task, from Debian's WordNet 3.0
(standalone; the text2token package never imports it).

Each pair is two WordNet noun definitions; its score is the Wu–Palmer similarity of the two synsets in WordNet's
noun hierarchy (``2·depth(lcs) / (depth(a) + depth(b))`` through their deepest common hypernym, depths counted
from ``entity`` = 1, hypernym and instance-hypernym pointers), times 5 — a graded "how close in meaning are these
two descriptions" with no human rater, so a proxy for STS, not STS itself. Pairs are drawn in four equal strata so
the scores spread over the range: sisters (a shared direct hypernym), cousins (a shared grandparent, not sisters),
the same lexicographer file (e.g. both ``noun.animal``) and anywhere. Every synset is used once; a definition
shared by two synsets, a definition in the retrieval task ``WordNetNounDefinitionRetrieval`` and definitions
outside 5–30 words are not used. Deterministic (``random.Random(0)``); a rerun writes the same bytes.

How to obtain the source (Debian bookworm, main)::

    mkdir -p /tmp/src && cd /tmp/src && apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb ex

Usage::

    python benchmarks/data/build_gloss_sts.py --sources /tmp/src/ex [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import random
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_dev_tasks import (  # noqa: E402  (the dev-task builder's writers; same output format)
    DEFAULT_OUT,
    WORDNET_VERSION,
    fresh_folder,
    nwords,
    parse_wordnet_data,
    validate,
    word_stats,
    write_jsonl,
    write_task_json,
)

NAME = "WordNetNounGlossSTS"
ROOT = "00001740"  # entity.n.01
PER_STRATUM = 100
MIN_WORDS, MAX_WORDS = 5, 30
STRATA = ("sisters", "cousins", "same_lexfile", "anywhere")


def parse_nouns(path: Path) -> dict[str, dict]:
    """offset → lexicographer file, hypernym offsets (``@`` and ``@i`` pointers) and definition."""
    return {
        offset: {
            "lexfile": s["lexfile"],
            "hypernyms": [target for symbol, target in s["pointers"] if symbol in ("@", "@i")],
            "definition": s["definition"],
        }
        for offset, s in parse_wordnet_data(path).items()
    }


def ancestors(synsets: dict, offset: str) -> dict[str, int]:
    """Every hypernym of ``offset`` (and itself, at 0) with its shortest distance upwards."""
    dist = {offset: 0}
    frontier = [offset]
    while frontier:
        nxt = []
        for s in frontier:
            for h in synsets[s]["hypernyms"]:
                if h not in dist:
                    dist[h] = dist[s] + 1
                    nxt.append(h)
        frontier = nxt
    return dist


def wu_palmer(anc, a: str, b: str) -> float:
    """``anc(s)``: ``s``'s ancestors with their distances (:func:`ancestors`)."""
    common = anc(a).keys() & anc(b).keys()
    depth = {c: anc(c)[ROOT] + 1 for c in common}  # entity has depth 1
    best = max(common, key=lambda c: (depth[c], -(anc(a)[c] + anc(b)[c]), c))
    d = depth[best]
    return 2 * d / (anc(a)[best] + d + anc(b)[best] + d)


def build(sources: Path, out: Path) -> dict:
    rng = random.Random(0)
    synsets = parse_nouns(sources / "usr/share/wordnet/data.noun")
    anc = functools.cache(functools.partial(ancestors, synsets))  # only the synsets a pair needs
    retrieval = out / "WordNetNounDefinitionRetrieval" / "corpus.jsonl"
    taken = {json.loads(line)["text"].lower() for line in retrieval.read_text(encoding="utf-8").splitlines()}
    def_count = collections.Counter(s["definition"].lower() for s in synsets.values())
    eligible = sorted(
        s
        for s, v in synsets.items()
        if s != ROOT
        and MIN_WORDS <= nwords(v["definition"]) <= MAX_WORDS
        and def_count[v["definition"].lower()] == 1
        and v["definition"].lower() not in taken
    )
    children = collections.defaultdict(list)
    for s in eligible:
        for h in synsets[s]["hypernyms"]:
            children[h].append(s)
    by_lexfile = collections.defaultdict(list)
    for s in eligible:
        by_lexfile[synsets[s]["lexfile"]].append(s)

    def parents(s):
        return set(synsets[s]["hypernyms"])

    def grandparents(s):
        return {g for p in parents(s) for g in synsets[p]["hypernyms"]}

    def partners(stratum, a):
        if stratum == "sisters":
            return {c for p in parents(a) for c in children[p]}
        if stratum == "cousins":
            cousins = {c for g in grandparents(a) for p in children[g] for c in children[p]}
            return {c for c in cousins if not parents(c) & parents(a)}
        return set(by_lexfile[synsets[a]["lexfile"]])  # same_lexfile

    used: set[str] = set()
    rows = []
    order = eligible[:]
    rng.shuffle(order)
    anchors = iter(order)
    for stratum in STRATA:
        made = 0
        while made < PER_STRATUM:
            a = next(anchors)
            if a in used:
                continue
            if stratum == "anywhere":
                b = order[rng.randrange(len(order))]
            else:
                pool = sorted(partners(stratum, a) - used - {a})
                if not pool:
                    continue
                b = pool[rng.randrange(len(pool))]
            if b in used or b == a:
                continue
            assert ROOT in anc(a) and ROOT in anc(b), "a noun synset does not reach entity"
            used |= {a, b}
            score = round(5 * wu_palmer(anc, a, b), 3)
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            rows.append({"text1": synsets[first]["definition"], "text2": synsets[second]["definition"], "score": score})
            made += 1
    rng.shuffle(rows)
    folder = fresh_folder(out, NAME, ("task.json", "test.jsonl", "LICENSE-WordNet.txt"))
    write_jsonl(folder / "test.jsonl", rows)
    shutil.copyfile(out / "WordNetNounDefinitionRetrieval" / "LICENSE-WordNet.txt", folder / "LICENSE-WordNet.txt")
    scores = [r["score"] for r in rows]
    write_task_json(
        folder,
        {
            "name": NAME,
            "type": "STS",
            "main_score": "spearman",
            "description": (
                "Graded similarity of two WordNet 3.0 noun definitions (gloss before the first quoted example). "
                "Score = 5 x the Wu-Palmer similarity of the two synsets in the noun hierarchy (2*depth(lcs) / "
                "(depth(a) + depth(b)) through the deepest common hypernym, entity = depth 1, hypernym and instance "
                "pointers): a taxonomy-graded proxy for sentence similarity, not human ratings. Four equal strata "
                "(sisters: a shared direct hypernym; cousins: a shared grandparent; the same lexicographer file; "
                "anywhere), each synset used once; definitions shared by two synsets, definitions in "
                "WordNetNounDefinitionRetrieval and definitions outside 5-30 words excluded. Main score: Spearman "
                "correlation between cosine similarity and the score (mteb's STS evaluator)."
            ),
            "source": f"Debian wordnet-base {WORDNET_VERSION}: /usr/share/wordnet/data.noun",
            "license": (
                "WordNet 3.0 license (Princeton University; permissive, keep the copyright notice: 'WordNet 3.0 "
                "Copyright 2006 by Princeton University. All rights reserved.'; LICENSE-WordNet.txt in this folder)"
            ),
            "n": {"test": len(rows), "per_stratum": PER_STRATUM, "eligible_synsets": len(eligible)},
        },
    )
    return {"folder": folder, "rows": rows, "scores": scores}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=Path, required=True, help="folder holding usr/share/wordnet (dpkg-deb -x)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="tasks folder (default: %(default)s)")
    args = ap.parse_args(argv)
    if not (args.sources / "usr/share/wordnet/data.noun").is_file():
        ap.error(f"{args.sources}: no usr/share/wordnet/data.noun here (extract wordnet-base with dpkg-deb -x first)")
    if not (args.out / "WordNetNounDefinitionRetrieval" / "corpus.jsonl").is_file():
        ap.error(f"{args.out}: not the tasks folder (WordNetNounDefinitionRetrieval/corpus.jsonl is missing)")
    r = build(args.sources, args.out)
    validate(r["folder"])
    rows, scores = r["rows"], r["scores"]
    print(f"{NAME}: {len(rows)} pairs -> {r['folder']}")
    print(f"  score mean {statistics.mean(scores):.2f}, quartiles {statistics.quantiles(scores, n=4)}")
    print(f"  {word_stats([x['text1'] for x in rows] + [x['text2'] for x in rows])}")


if __name__ == "__main__":
    main()
