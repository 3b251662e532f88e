#!/usr/bin/env python3
"""Build four small English dev tasks from Debian packages (standalone; the text2token package never imports it).

Tasks written under ``--out`` (default ``src/text2token/data/tasks``), one folder each, in the format of the
other bundled tasks (see that folder's README.md):

1. ``FortuneTopicClassification`` (Classification, accuracy): fortune quotes labelled by the topic file they come
   from (Debian ``fortunes`` 1:1.99.1-7.3).
2. ``DebianPackageSectionClustering`` (Clustering, v_measure): long package descriptions labelled by archive
   Section (Debian bookworm main package index + its English description index).
3. ``DebianSynopsisReranking`` (Reranking, map_at_1000): query = a package's one-line synopsis; 10 candidate long
   descriptions (its own + 9 from other packages of the same Section); packages disjoint from task 2.
4. ``WordNetVerbSensePairClassification`` (PairClassification, max_ap): (verb example sentence, definition) pairs;
   label 1 = the definition of the example's own sense, 0 = the definition of another sense of the same verb
   (Debian ``wordnet-base`` 1:3.0-37).

Everything is deterministic: each task draws from its own ``random.Random(0)``. Re-running overwrites the same files
with the same bytes (idempotent). The script validates what it wrote and prints counts and length statistics.

How to obtain the sources (Debian bookworm, main)::

    mkdir -p /tmp/src && cd /tmp/src
    apt-get download fortunes fortunes-min wordnet-base    # fortunes 1:1.99.1-7.3, wordnet-base 1:3.0-37
    for f in *.deb; do dpkg-deb -x "$f" ex; done            # -> ex/usr/share/games/fortunes/, ex/usr/share/wordnet/,
                                                            #    ex/usr/share/doc/{fortunes,fortunes-min,wordnet-base}/
    # Package index: apt keeps it as
    #   /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4
    # (after `apt-get update`). Since ~2012 that index carries only the one-line synopsis (plus Description-md5);
    # the long descriptions are in the English description index main/i18n/Translation-en, which Docker images
    # skip (Acquire::Languages "none"). Fetch both into a separate lists folder with the ordinary client:
    mkdir -p /tmp/src/lists/partial
    apt-get update -o Dir::State::Lists=/tmp/src/lists -o Acquire::Languages=en
    # -> /tmp/src/lists/deb.debian.org_debian_dists_bookworm_{InRelease,main_binary-amd64_Packages.lz4,
    #    main_i18n_Translation-en.lz4}

Usage::

    python benchmarks/data/build_dev_tasks.py --sources /tmp/src/ex [--lists /tmp/src/lists] [--out DIR]

``--lists`` defaults to ``<sources>/../lists`` and then ``/var/lib/apt/lists`` (the first folder holding the file
wins). ``.lz4`` indexes are read through the ``lz4`` command; ``.gz``/``.xz`` and plain files are read directly.
When the bookworm InRelease file sits next to the indexes, the SHA-256 of each decompressed index is checked against
it and the release's Version and Date are recorded in task.json.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import json
import lzma
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "src" / "text2token" / "data" / "tasks"
DEFAULT_CORPUS = REPO / "src" / "text2token" / "data" / "corpus"

FORTUNES_VERSION = "1:1.99.1-7.3"
WORDNET_VERSION = "1:3.0-37"

# ---- task 1 settings
FORTUNE_TOPICS = ("computers", "food", "law", "love", "politics", "science")
FORTUNE_TRAIN, FORTUNE_TEST = 40, 100
FORTUNE_MIN_WORDS, FORTUNE_MAX_WORDS = 5, 80
# ---- task 2 settings
CLUSTER_SECTIONS = ("database", "editors", "electronics", "games", "graphics", "hamradio", "mail", "sound")
CLUSTER_PER_SECTION, CLUSTER_MAX_WORDS = 60, 80
# ---- task 3 settings
RERANK_SECTIONS = ("admin", "devel", "games", "math", "net", "science", "sound", "text", "utils", "web")
RERANK_QUERIES_PER_SECTION, RERANK_EXTRA_NEGATIVES_PER_SECTION, RERANK_NEGATIVES = 20, 30, 9
RERANK_MAX_WORDS, RERANK_MIN_SYNOPSIS_WORDS = 60, 4
# ---- shared Debian filters (tasks 2 and 3)
MIN_DESCRIPTION_WORDS = 15
NEAR_DUP_WORDS = 30
EXCLUDED_NAME = re.compile(r"^(lib|python3-|golang-|node-|r-cran-|ruby-|fonts-|texlive-)|-(doc|dev|dbg|data|common)$")
# ---- task 4 settings
WN_PAIRS_PER_LABEL = 300
WN_MIN_EXAMPLE_WORDS = 4
WN_DECONTAM_MIN_WORDS = 6


def ws(text: str) -> str:
    return " ".join(text.split())


def nwords(text: str) -> int:
    return len(text.split())


def cut_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_task_json(folder: Path, meta: dict) -> None:
    (folder / "task.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def fresh_folder(out: Path, name: str, files: tuple[str, ...]) -> Path:
    """The task folder, with files this script writes there removed first (so a rerun leaves no stale file)."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f).unlink(missing_ok=True)
    return folder


# =====================================================================================================================
# 1. FortuneTopicClassification
# =====================================================================================================================
def unbackspace(text: str) -> str:
    """Resolve overstriking (``_\\bx`` underline, ``x\\bx`` bold): a backspace deletes the character before it."""
    out: list[str] = []
    for ch in text:
        if ch == "\b":
            if out:
                out.pop()
        else:
            out.append(ch)
    return "".join(out)


def read_fortune_file(path: Path) -> list[str]:
    """Raw fortunes of one file: the text between lines that hold only ``%``."""
    text = path.read_bytes().decode("utf-8")
    items, cur = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == "%":
            items.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    items.append("\n".join(cur))
    return [unbackspace(x) for x in items if x.strip()]


def fortune_reject(raw: str, text: str) -> str | None:
    """Why a fortune is not usable (None = usable). ``raw`` keeps the line layout, ``text`` is whitespace-collapsed."""
    n = nwords(text)
    if n < FORTUNE_MIN_WORDS or n > FORTUNE_MAX_WORDS:
        return "length"
    visible = [c for c in text if not c.isspace()]
    if sum(c.isalpha() for c in visible) / len(visible) < 0.7:
        return "non_letters"
    if re.search(r"([^\w\s.!?])\1{3,}", raw):  # runs like ----, ====, ||||, **** (not "...." or "!!!!")
        return "ascii_art"
    lines = [ln for ln in raw.split("\n") if ln.strip()]
    if sum(1 for ln in lines if re.search(r"\S {3,}\S", ln.strip())) >= 2:  # column layouts, drawings
        return "ascii_art"
    return None


def build_fortunes(sources: Path, out: Path) -> dict:
    rng = random.Random(0)
    fdir = sources / "usr/share/games/fortunes"
    files = sorted(p for p in fdir.iterdir() if p.is_file() and not p.is_symlink() and "." not in p.name)
    missing = [t for t in FORTUNE_TOPICS if not (fdir / t).is_file()]
    if missing:
        sys.exit(f"fortune files missing in {fdir}: {missing}")
    per_file: dict[str, list[tuple[str, str]]] = {}
    files_of_text: dict[str, set[str]] = collections.defaultdict(set)
    for p in files:
        rows = [(raw, ws(raw)) for raw in read_fortune_file(p)]
        per_file[p.name] = rows
        for _, t in rows:
            files_of_text[t].add(p.name)
    dropped: dict[str, collections.Counter] = {}
    pools: dict[str, list[str]] = {}
    for topic in FORTUNE_TOPICS:
        c = collections.Counter()
        seen, pool = set(), []
        for raw, text in per_file[topic]:
            why = fortune_reject(raw, text)
            if why is None and len(files_of_text[text]) > 1:
                why = "in_other_file"
            if why is None and text in seen:
                why = "duplicate"
            if why:
                c[why] += 1
                continue
            seen.add(text)
            pool.append(text)
        dropped[topic], pools[topic] = c, pool
    train, test, n_test = [], [], {}
    for topic in FORTUNE_TOPICS:
        pool = pools[topic][:]
        rng.shuffle(pool)
        train += [{"text": t, "label": topic} for t in pool[:FORTUNE_TRAIN]]
        chosen = pool[FORTUNE_TRAIN : FORTUNE_TRAIN + FORTUNE_TEST]
        n_test[topic] = len(chosen)
        test += [{"text": t, "label": topic} for t in chosen]
    rng.shuffle(train)
    rng.shuffle(test)

    name = "FortuneTopicClassification"
    folder = fresh_folder(out, name, ("train.jsonl", "test.jsonl", "task.json", "LICENSE-fortunes.txt"))
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    shutil.copyfile(sources / "usr/share/doc/fortunes/copyright", folder / "LICENSE-fortunes.txt")
    short = [t for t in FORTUNE_TOPICS if n_test[t] < FORTUNE_TEST]
    write_task_json(
        folder,
        {
            "name": name,
            "type": "Classification",
            "main_score": "accuracy",
            "description": (
                "Topic of a fortune-cookie quote, labelled by the fortune file it comes from "
                f"({', '.join(FORTUNE_TOPICS)}). Fortunes are split on lines holding only '%', overstrike backspaces "
                f"resolved, whitespace collapsed; kept {FORTUNE_MIN_WORDS}-{FORTUNE_MAX_WORDS} words; dropped: ASCII "
                "art / mostly non-letters, exact duplicates, and texts present in more than one fortune file. Random "
                f"sample (seed 0): {FORTUNE_TRAIN} train per label and up to {FORTUNE_TEST} test per label, disjoint. "
                "Attribution lines ('-- Author') are part of the text. Labels are noisy by nature (a 'politics' or "
                "'science' fortune is often a general aphorism)."
                + (f" Labels with fewer than {FORTUNE_TEST} test items: {', '.join(short)}." if short else "")
            ),
            "source": (
                f"Debian fortunes {FORTUNES_VERSION} (bookworm): /usr/share/games/fortunes/"
                f"{{{','.join(FORTUNE_TOPICS)}}}; cross-file duplicate check over all "
                f"{len(files)} fortune files of fortunes + fortunes-min {FORTUNES_VERSION}"
            ),
            "license": (
                "Debian copyright file (copied as LICENSE-fortunes.txt): the fortune program is under the BSD licence, "
                "'Copyright (c) 1991 The Regents of the University of California' (advertising clause deleted). The "
                "file gives no separate licence for the quotations; upstream's Notes say they were 'collected "
                "haphazardly' and are distributed as fair use, so the copyright in an individual quotation stays with "
                "its author. Debian ships the package in main."
            ),
            "n": {
                "labels": len(FORTUNE_TOPICS),
                "usable_per_label": {t: len(pools[t]) for t in FORTUNE_TOPICS},
                "dropped": {t: dict(sorted(dropped[t].items())) for t in FORTUNE_TOPICS},
                "test_per_label": n_test,
                "train": len(train),
                "test": len(test),
            },
        },
    )
    return {
        "folder": folder,
        "train": len(train),
        "test": len(test),
        "usable": {t: len(pools[t]) for t in pools},
        "test_per_label": n_test,
        "dropped": {t: dict(dropped[t]) for t in dropped},
        "texts": [r["text"] for r in train + test],
    }


# =====================================================================================================================
# Debian package index (tasks 2 and 3)
# =====================================================================================================================
def find_index(dirs: list[Path], pattern: str) -> Path:
    for d in dirs:
        hits = sorted(d.glob(pattern)) if d.is_dir() else []
        if hits:
            return hits[0]
    sys.exit(f"no file matching {pattern} in {', '.join(map(str, dirs))} (see the module docstring)")


def read_index(path: Path) -> bytes:
    if path.suffix == ".lz4":
        # fixed arguments, no shell; the lz4 tool from PATH (Debian's apt lists are lz4-compressed)
        return subprocess.run(["lz4", "-dc", str(path)], check=True, capture_output=True).stdout  # noqa: S603, S607
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    return path.read_bytes()


def release_info(inrelease: Path | None) -> dict:
    """Version, Date and SHA-256 sums of the release file (if present)."""
    if inrelease is None or not inrelease.is_file():
        return {}
    info: dict = {"sha256": {}}
    in_sha = False
    for line in inrelease.read_text(encoding="utf-8", errors="replace").split("\n"):
        if line.startswith(("Version:", "Date:", "Codename:", "Suite:")):
            k, _, v = line.partition(":")
            info[k.lower()] = v.strip()
        if line.startswith("SHA256:"):
            in_sha = True
            continue
        if in_sha:
            if line.startswith(" "):
                h, _, rest = line.strip().partition(" ")
                info["sha256"][rest.split()[-1]] = h
            else:
                in_sha = False
    return info


def stanzas(text: str):
    cur: dict[str, str] = {}
    last = None
    for line in text.split("\n"):
        if not line:
            if cur:
                yield cur
            cur, last = {}, None
        elif line[0] in " \t":
            cur[last] += "\n" + line
        else:
            k, _, v = line.partition(":")
            cur[k], last = v.strip(), k
    if cur:
        yield cur


def clean_long_description(desc_en: str) -> str:
    """The continuation lines of a Description field: leading space stripped, ' .' paragraph lines dropped."""
    lines = desc_en.split("\n")[1:]
    return ws(" ".join(ln.strip() for ln in lines if ln.strip() != "."))


def load_debian(lists_dirs: list[Path]) -> tuple[list[dict], dict]:
    pk_path = find_index(lists_dirs, "*_dists_bookworm_main_binary-amd64_Packages*")
    tr_path = find_index([pk_path.parent] + lists_dirs, "*_dists_bookworm_main_i18n_Translation-en*")
    rel = release_info(next(iter(sorted(pk_path.parent.glob("*_dists_bookworm_InRelease"))), None))
    raw = {"main/binary-amd64/Packages": read_index(pk_path), "main/i18n/Translation-en": read_index(tr_path)}
    checked = {}
    for key, data in raw.items():
        want = rel.get("sha256", {}).get(key)
        got = hashlib.sha256(data).hexdigest()
        if want and want != got:
            sys.exit(f"{key}: SHA-256 {got} does not match the InRelease file ({want})")
        checked[key] = {"sha256": got, "verified_against_InRelease": bool(want)}
    long_by = {}
    for s in stanzas(raw["main/i18n/Translation-en"].decode("utf-8")):
        long_by[(s["Package"], s["Description-md5"])] = s["Description-en"]
    pkgs, seen = [], set()
    for s in stanzas(raw["main/binary-amd64/Packages"].decode("utf-8")):
        name = s["Package"]
        if name in seen:  # a handful of names occur twice (different versions); keep the first
            continue
        seen.add(name)
        desc = long_by.get((name, s.get("Description-md5", "")))
        if desc is None:
            continue
        pkgs.append(
            {
                "name": name,
                "source": s.get("Source", name).split()[0],
                "section": s.get("Section", "").split("/")[-1],
                "synopsis": ws(s["Description"]),
                "long": clean_long_description(desc),
            }
        )
    meta = {
        "packages_file": pk_path.name,
        "translations_file": tr_path.name,
        "release": {k: rel[k] for k in ("suite", "codename", "version", "date") if k in rel},
        "files": checked,
        "stanzas": len(pkgs),
    }
    return pkgs, meta


def debian_pool(pkgs: list[dict], sections: tuple[str, ...], exclude_sources: set[str]) -> tuple[dict, dict]:
    """Per section: packages that pass the name/length filters, one per source package, no repeated description."""
    stats = collections.Counter()
    cand = []
    for p in pkgs:
        if p["section"] not in sections:
            continue
        if EXCLUDED_NAME.search(p["name"]):
            stats["excluded_name"] += 1
            continue
        if nwords(p["long"]) < MIN_DESCRIPTION_WORDS:
            stats["short_description"] += 1
            continue
        if p["source"] in exclude_sources:
            stats["source_used_by_other_task"] += 1
            continue
        cand.append(p)
    # exact duplicates of the full description and of its first NEAR_DUP_WORDS words (package families) are
    # dropped: a package is left out when its key occurs more than once among the packages of the whole index (any
    # section) that pass the name and length filters
    key_count = collections.Counter()
    for p in pkgs:
        if not EXCLUDED_NAME.search(p["name"]) and nwords(p["long"]) >= MIN_DESCRIPTION_WORDS:
            key_count[("full", p["long"].lower())] += 1
            key_count[("head", cut_words(p["long"].lower(), NEAR_DUP_WORDS))] += 1
    by_section: dict[str, list[dict]] = {s: [] for s in sections}
    sources_seen = set()
    for p in sorted(cand, key=lambda p: p["name"]):
        if (
            key_count[("full", p["long"].lower())] > 1
            or key_count[("head", cut_words(p["long"].lower(), NEAR_DUP_WORDS))] > 1
        ):
            stats["duplicate_description"] += 1
            continue
        if p["source"] in sources_seen:
            stats["same_source_package"] += 1
            continue
        sources_seen.add(p["source"])
        by_section[p["section"]].append(p)
    return by_section, dict(stats)


def debian_license(meta: dict) -> str:
    rel = meta["release"]
    return (
        "Debian main package metadata: each package in main is DFSG-free, and its description is part of that "
        "package (its debian/control) and under that package's licence. Taken from the bookworm main indexes "
        f"{meta['packages_file']} and {meta['translations_file']} (Debian {rel.get('version', '12')}, release "
        f"file dated {rel.get('date', 'unknown')})."
    )


# =====================================================================================================================
# 2. DebianPackageSectionClustering
# =====================================================================================================================
def build_sections(pkgs: list[dict], meta: dict, out: Path) -> dict:
    rng = random.Random(0)
    by_section, stats = debian_pool(pkgs, CLUSTER_SECTIONS, set())
    rows, used, pool_sizes = [], [], {}
    for s in CLUSTER_SECTIONS:
        pool = by_section[s]
        pool_sizes[s] = len(pool)
        pick = rng.sample(pool, min(CLUSTER_PER_SECTION, len(pool)))
        used += pick
        rows += [{"text": cut_words(p["long"], CLUSTER_MAX_WORDS), "label": s} for p in pick]
    rng.shuffle(rows)
    name = "DebianPackageSectionClustering"
    folder = fresh_folder(out, name, ("test.jsonl", "task.json"))
    write_jsonl(folder / "test.jsonl", rows)
    per_label = collections.Counter(r["label"] for r in rows)
    write_task_json(
        folder,
        {
            "name": name,
            "type": "Clustering",
            "main_score": "v_measure",
            "description": (
                "Cluster Debian package long descriptions by archive Section "
                f"({', '.join(CLUSTER_SECTIONS)}). Long description = the continuation lines of the English "
                "Description (synopsis line left out, ' .' paragraph lines dropped, whitespace collapsed), cut to "
                f"the first {CLUSTER_MAX_WORDS} words. Excluded: names starting with lib, python3-, golang-, node-, "
                "r-cran-, ruby-, fonts-, texlive- or ending in -doc, -dev, -dbg, -data, -common; descriptions under "
                f"{MIN_DESCRIPTION_WORDS} words; descriptions whose full text or first {NEAR_DUP_WORDS} words occur for "
                "more than one package in the index; more than one binary package per source package. "
                f"{CLUSTER_PER_SECTION} packages sampled per Section (seed 0)."
            ),
            "source": (
                f"Debian bookworm main (Debian {meta['release'].get('version', '12')}): {meta['packages_file']} "
                f"(Package, Source, Section) joined on Package + Description-md5 with {meta['translations_file']} "
                "(Description-en)"
            ),
            "license": debian_license(meta),
            "n": {
                "labels": len(CLUSTER_SECTIONS),
                "per_label": dict(sorted(per_label.items())),
                "pool_per_label": pool_sizes,
                "filtered": stats,
                "index": meta,
                "test": len(rows),
            },
        },
    )
    return {
        "folder": folder,
        "test": len(rows),
        "per_label": dict(per_label),
        "pool": pool_sizes,
        "sources": {p["source"] for p in used},
        "names": {p["name"] for p in used},
        "texts": [r["text"] for r in rows],
    }


# =====================================================================================================================
# 3. DebianSynopsisReranking
# =====================================================================================================================
def name_pattern(name: str) -> re.Pattern:
    # whole word: not glued to letters, digits, '+', '-', '.' (a trailing '.' that ends a sentence is allowed)
    return re.compile(r"(?<![\w.+-])" + re.escape(name) + r"(?![\w+-]|\.\w)", re.IGNORECASE)


def build_reranking(pkgs: list[dict], meta: dict, used_sources: set[str], used_names: set[str], out: Path) -> dict:
    rng = random.Random(0)
    by_section, stats = debian_pool(pkgs, RERANK_SECTIONS, used_sources)
    skipped = collections.Counter()
    queries, docs, candidates = [], {}, []  # docs: package name -> text
    per_section = {}
    for s in RERANK_SECTIONS:
        pool = [p for p in by_section[s] if p["name"] not in used_names]
        rng.shuffle(pool)
        qpk, rest = [], []
        for p in pool:
            if len(qpk) < RERANK_QUERIES_PER_SECTION:
                syn = p["synopsis"]
                if nwords(syn) < RERANK_MIN_SYNOPSIS_WORDS:
                    skipped["synopsis_under_4_words"] += 1
                    rest.append(p)
                    continue
                if syn.lower() in p["long"].lower():
                    skipped["synopsis_inside_description"] += 1
                    rest.append(p)
                    continue
                qpk.append(p)
            else:
                rest.append(p)
        extra = rest[:RERANK_EXTRA_NEGATIVES_PER_SECTION]
        if len(qpk) < RERANK_QUERIES_PER_SECTION or len(extra) < RERANK_EXTRA_NEGATIVES_PER_SECTION:
            sys.exit(f"section {s}: only {len(qpk)} queries / {len(extra)} extra negatives available")
        per_section[s] = len(qpk)
        for p in qpk + extra:
            docs[p["name"]] = cut_words(name_pattern(p["name"]).sub("this package", p["long"]), RERANK_MAX_WORDS)
        for p in qpk:
            others = [o["name"] for o in qpk + extra if o["name"] != p["name"]]
            negs = rng.sample(others, RERANK_NEGATIVES)
            cands = [p["name"]] + negs
            rng.shuffle(cands)
            queries.append((p["name"], p["synopsis"]))
            candidates.append((p["name"], cands))
    # drop documents no query refers to, then give opaque ids in a random order
    referenced = {d for _, c in candidates for d in c}
    doc_names = sorted(referenced)
    rng.shuffle(doc_names)
    doc_id = {n: f"d{i:04d}" for i, n in enumerate(doc_names)}
    order = list(range(len(queries)))
    rng.shuffle(order)
    q_rows, c_rows, r_rows = [], [], []
    for qi, k in enumerate(order):
        pname, syn = queries[k]
        qid = f"q{qi:04d}"
        q_rows.append({"id": qid, "text": syn})
        r_rows.append({"query_id": qid, "doc_id": doc_id[pname], "score": 1})
        c_rows.append({"query_id": qid, "doc_ids": [doc_id[n] for n in candidates[k][1]]})
    corpus = sorted(({"id": doc_id[n], "text": docs[n]} for n in doc_names), key=lambda r: r["id"])
    name_in_query = sum(1 for pname, syn in queries if name_pattern(pname).search(syn))
    name = "DebianSynopsisReranking"
    folder = fresh_folder(out, name, ("queries.jsonl", "corpus.jsonl", "qrels.jsonl", "candidates.jsonl", "task.json"))
    write_jsonl(folder / "queries.jsonl", q_rows)
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "qrels.jsonl", r_rows)
    write_jsonl(folder / "candidates.jsonl", c_rows)
    write_task_json(
        folder,
        {
            "name": name,
            "type": "Reranking",
            "main_score": "map_at_1000",
            "description": (
                "Rerank 10 candidate Debian long package descriptions for a query that is a package's one-line "
                "synopsis: 1 relevant (the package's own description) + 9 hard negatives (descriptions of other packages "
                f"of the same Section). Sections: {', '.join(RERANK_SECTIONS)} ({RERANK_QUERIES_PER_SECTION} queries "
                "each). Negatives are drawn from the section's other query packages plus "
                f"{RERANK_EXTRA_NEGATIVES_PER_SECTION} non-query packages of the section; a document can be a negative "
                "for several queries. In each description the document's own package name (case-insensitive, whole "
                f"word) is replaced by 'this package', then the text is cut to the first {RERANK_MAX_WORDS} words. "
                "Same package filters as DebianPackageSectionClustering, and no package "
                "(or source package) of that task is used. Synopses under 4 words, or occurring verbatim in their "
                "own description, are not used as queries. Score: mteb's reranking (the retrieval evaluator restricted "
                "to the given candidates, candidates.jsonl = top_ranked), MAP@1000; with 10 candidates and one relevant "
                "document this equals MRR@10."
            ),
            "source": (
                f"Debian bookworm main (Debian {meta['release'].get('version', '12')}): {meta['packages_file']} "
                f"(Package, Source, Section, Description synopsis) joined on Package + Description-md5 with "
                f"{meta['translations_file']} (Description-en)"
            ),
            "license": debian_license(meta),
            "n": {
                "sections": per_section,
                "candidates_per_query": 1 + RERANK_NEGATIVES,
                "queries_naming_their_package": name_in_query,
                "skipped_as_query": dict(skipped),
                "filtered": stats,
                "queries": len(q_rows),
                "corpus": len(corpus),
                "qrels": len(r_rows),
                "candidates": len(c_rows),
            },
        },
    )
    return {
        "folder": folder,
        "queries": len(q_rows),
        "corpus": len(corpus),
        "per_section": per_section,
        "names": {n for n in doc_names},
        "skipped": dict(skipped),
        "name_in_query": name_in_query,
        "query_texts": [r["text"] for r in q_rows],
        "doc_texts": [r["text"] for r in corpus],
    }


# =====================================================================================================================
# 4. WordNetVerbSensePairClassification
# =====================================================================================================================
def parse_wordnet_data(path: Path) -> dict[str, dict]:
    """A WordNet ``data.<pos>`` file: offset → lexicographer file, lemmas, pointers ``(symbol, target offset)``,
    definition (the gloss before its first quoted example, trailing ``;`` removed) and quoted examples."""
    synsets = {}
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line or line.startswith("  "):
            continue
        head, _, gloss = line.partition(" | ")
        f = head.split()
        offset, lexfile, w_cnt = f[0], f[1], int(f[3], 16)
        lemmas = [f[4 + 2 * i].lower() for i in range(w_cnt)]
        i = 4 + 2 * w_cnt
        pointers = [(f[i + 1 + 4 * j], f[i + 2 + 4 * j]) for j in range(int(f[i]))]
        gloss = gloss.strip()
        definition = gloss.split('"')[0].strip().rstrip(";").strip()
        examples = [ws(e) for e in re.findall(r'"([^"]+)"', gloss)]
        synsets[offset] = {
            "offset": offset,
            "lexfile": lexfile,
            "lemmas": lemmas,
            "pointers": pointers,
            "definition": ws(definition),
            "examples": examples,
        }
    return synsets


def parse_wordnet_verbs(path: Path) -> dict[str, dict]:
    synsets = parse_wordnet_data(path)
    for s in synsets.values():
        s["pointers"] = {target for _, target in s["pointers"]}
    return synsets


def verb_forms(word: str, irregular: dict[str, set[str]]) -> set[str]:
    """Regular inflections of a verb (over-generating is harmless: the forms are only searched for) + verb.exc."""
    forms = {word} | irregular.get(word, set())
    cons = "bcdfghjklmnpqrstvwxz"
    if re.search(r"(s|x|z|ch|sh|o)$", word):
        forms.add(word + "es")
    if len(word) > 1 and word.endswith("y") and word[-2] in cons:
        forms |= {word[:-1] + "ies", word[:-1] + "ied"}
    forms.add(word + "s")
    if word.endswith("e"):
        forms |= {word + "d", word[:-1] + "ing", word + "ing"}
        if word.endswith("ie"):
            forms.add(word[:-2] + "ying")
    else:
        forms |= {word + "ed", word + "ing"}
    if len(word) > 2 and word[-1] in cons and word[-1] not in "wxy" and word[-2] in "aeiou":
        forms |= {word + word[-1] + "ed", word + word[-1] + "ing"}
    if word.endswith("c"):
        forms |= {word + "ked", word + "king"}
    return forms


def lemma_pattern(lemma: str, irregular: dict[str, set[str]]) -> re.Pattern:
    parts = lemma.split("_")
    first = "|".join(sorted((re.escape(f) for f in verb_forms(parts[0], irregular)), key=len, reverse=True))
    rest = "".join(r"[\s-]+" + re.escape(p) for p in parts[1:])
    return re.compile(r"(?<![a-z])(?:" + first + ")" + rest + r"(?![a-z])", re.IGNORECASE)


def corpus_ngrams(paths: list[Path]) -> tuple[set, list[str]]:
    lines = []
    for p in paths:
        lines += [" ".join(re.findall(r"[a-z0-9']+", ln.lower())) for ln in p.read_text(encoding="utf-8").split("\n")]
    grams = set()
    for ln in lines:
        w = ln.split()
        for i in range(len(w) - WN_DECONTAM_MIN_WORDS + 1):
            grams.add(" ".join(w[i : i + WN_DECONTAM_MIN_WORDS]))
    return grams, lines


def in_corpus(example: str, grams: set, lines: list[str]) -> bool:
    w = re.findall(r"[a-z0-9']+", example.lower())
    if len(w) < WN_DECONTAM_MIN_WORDS:
        return False
    if any(" ".join(w[i : i + WN_DECONTAM_MIN_WORDS]) not in grams for i in range(len(w) - WN_DECONTAM_MIN_WORDS + 1)):
        return False
    needle = " " + " ".join(w) + " "
    return any(needle in " " + ln + " " for ln in lines)


def build_wordnet_pairs(sources: Path, corpus_dir: Path, out: Path) -> dict:
    rng = random.Random(0)
    wn = sources / "usr/share/wordnet"
    synsets = parse_wordnet_verbs(wn / "data.verb")
    irregular: dict[str, set[str]] = collections.defaultdict(set)
    for line in (wn / "verb.exc").read_text(encoding="utf-8").split("\n"):
        f = line.split()
        if len(f) >= 2:
            for base in f[1:]:
                irregular[base].add(f[0])
    corpus_files = [corpus_dir / "brown_sentences.txt", corpus_dir / "wiki_sentences.txt"]
    grams, lines = corpus_ngrams(corpus_files)
    example_synsets = collections.Counter(e.lower() for s in synsets.values() for e in set(s["examples"]))
    def_count = collections.Counter(s["definition"].lower() for s in synsets.values())
    senses: dict[str, list[str]] = collections.defaultdict(list)
    for off, s in synsets.items():
        for lem in s["lemmas"]:
            if off not in senses[lem]:
                senses[lem].append(off)
    stats = collections.Counter()
    contaminated = set()
    # eligible[lemma][offset] = examples of that sense that contain the lemma (inflected)
    eligible: dict[str, dict[str, list[str]]] = {}
    for lem in sorted(senses):
        if len(senses[lem]) < 2:
            continue
        pat = lemma_pattern(lem, irregular)
        per = {}
        for off in senses[lem]:
            s = synsets[off]
            if not s["definition"] or def_count[s["definition"].lower()] > 1:
                continue
            exs = []
            for e in s["examples"]:
                if nwords(e) < WN_MIN_EXAMPLE_WORDS or example_synsets[e.lower()] > 1 or not pat.search(e):
                    continue
                if e in contaminated or in_corpus(e, grams, lines):
                    contaminated.add(e)
                    continue
                exs.append(e)
            if exs:
                per[off] = exs
        if len(per) >= 2:
            eligible[lem] = per
    stats["lemmas_with_2plus_eligible_senses"] = len(eligible)
    stats["examples_in_training_corpus"] = len(contaminated)

    def distant(a: str, b: str) -> bool:  # different lexicographer file and no direct pointer between the senses
        sa, sb = synsets[a], synsets[b]
        return sa["lexfile"] != sb["lexfile"] and b not in sa["pointers"] and a not in sb["pointers"]

    lemmas = sorted(eligible)
    rng.shuffle(lemmas)
    used_examples, used_synsets = set(), set()
    pairs = []
    for lem in lemmas:
        if len(pairs) >= 2 * WN_PAIRS_PER_LABEL:
            break
        per = {
            o: [e for e in exs if e.lower() not in used_examples]
            for o, exs in eligible[lem].items()
            if o not in used_synsets
        }
        per = {o: exs for o, exs in per.items() if exs}
        offs = sorted(per)
        combos = [(a, b) for a in offs for b in offs if a != b and distant(a, b)]
        if not combos:
            stats["lemma_skipped_no_distant_sense_pair"] += 1
            continue
        a, b = rng.choice(combos)
        ex_a, ex_b = rng.choice(per[a]), rng.choice(per[b])
        if ex_a.lower() == ex_b.lower():
            continue
        used_examples |= {ex_a.lower(), ex_b.lower()}
        used_synsets |= {a, b}
        d = synsets[a]["definition"]
        pairs.append({"text1": ex_a, "text2": d, "label": 1})
        pairs.append({"text1": ex_b, "text2": d, "label": 0})
        stats["lemmas_used"] += 1
    rng.shuffle(pairs)
    name = "WordNetVerbSensePairClassification"
    folder = fresh_folder(out, name, ("test.jsonl", "task.json", "LICENSE-WordNet.txt"))
    write_jsonl(folder / "test.jsonl", pairs)
    licence = out / "WordNetNounDefinitionRetrieval" / "LICENSE-WordNet.txt"
    if not licence.is_file():
        licence = DEFAULT_OUT / "WordNetNounDefinitionRetrieval" / "LICENSE-WordNet.txt"
    shutil.copyfile(licence, folder / "LICENSE-WordNet.txt")
    labels = collections.Counter(p["label"] for p in pairs)
    write_task_json(
        folder,
        {
            "name": name,
            "type": "PairClassification",
            "main_score": "max_ap",
            "description": (
                "Does this definition give the sense the verb has in this example sentence? text1 = a WordNet 3.0 verb "
                "example sentence (from the synset's gloss, containing the lemma, possibly inflected: regular forms + "
                f"verb.exc), text2 = a verb definition (gloss before the first quoted example, trailing ';' removed). "
                "For each sampled lemma two of its senses A and B are picked that lie in different lexicographer files "
                "and are not linked by a WordNet pointer; the pairs are (example of A, definition of A) -> 1 and "
                "(example of B, definition of A) -> 0. Each example and each synset is used once; examples shared by "
                "several synsets, definitions shared by several verb synsets, and examples under "
                f"{WN_MIN_EXAMPLE_WORDS} words are not used; examples of {WN_DECONTAM_MIN_WORDS}+ words found in the "
                "training corpora (corpus/brown_sentences.txt, corpus/wiki_sentences.txt) are excluded. Score: mteb's "
                "pair classification, max_ap = the best average precision (label 1 = positive) over the pair scores "
                "mteb computes (the model's similarity, cosine, dot product, Manhattan and Euclidean distance); average "
                "precision needs no threshold."
            ),
            "source": f"Debian wordnet-base {WORDNET_VERSION}: /usr/share/wordnet/data.verb (+ verb.exc for inflections)",
            "license": (
                "WordNet 3.0 license (Princeton University; permissive, keep the copyright notice: 'WordNet 3.0 "
                "Copyright 2006 by Princeton University. All rights reserved.'; LICENSE-WordNet.txt in this "
                "folder)"
            ),
            "n": {
                "positive": labels[1],
                "negative": labels[0],
                "lemmas": stats["lemmas_used"],
                "eligible_lemmas": stats["lemmas_with_2plus_eligible_senses"],
                "examples_dropped_in_training_corpus": stats["examples_in_training_corpus"],
                "lemmas_skipped_no_distant_sense_pair": stats["lemma_skipped_no_distant_sense_pair"],
                "test": len(pairs),
            },
        },
    )
    return {
        "folder": folder,
        "test": len(pairs),
        "labels": dict(labels),
        "stats": dict(stats),
        "text1": [p["text1"] for p in pairs],
        "text2": [p["text2"] for p in pairs],
    }


# =====================================================================================================================
# validation
# =====================================================================================================================
PAIR_KEYS = {"PairClassification": {"text1", "text2", "label"}, "STS": {"text1", "text2", "score"}}
KEYS = {
    "train": {"text", "label"},
    "test": {"text", "label"},
    "queries": {"id", "text"},
    "corpus": {"id", "text"},
    "qrels": {"query_id", "doc_id", "score"},
    "candidates": {"query_id", "doc_ids"},
}


def read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.endswith("\n"):
                raise AssertionError(f"{path}:{i}: no final newline")
            rows.append(json.loads(line))
    return rows


def validate(folder: Path) -> None:
    meta = json.loads((folder / "task.json").read_text(encoding="utf-8"))
    assert {"name", "type", "main_score", "description", "source", "license", "n"} <= set(meta), folder
    assert meta["name"] == folder.name
    data = {p.stem: read_rows(p) for p in sorted(folder.glob("*.jsonl"))}
    for stem, rows in data.items():
        assert meta["n"][stem] == len(rows), f"{folder.name}: n[{stem}] = {meta['n'][stem]}, file has {len(rows)}"
        want = PAIR_KEYS.get(meta["type"], KEYS[stem])
        for r in rows:
            assert set(r) == want, f"{folder.name}/{stem}: keys {set(r)}"
            for k in ("text", "text1", "text2"):
                if k in r:
                    assert isinstance(r[k], str) and r[k].strip() and r[k] == ws(r[k]), f"{folder.name}: bad {k}"
    t = meta["type"]
    if t == "Classification":
        assert not {r["text"] for r in data["train"]} & {r["text"] for r in data["test"]}, "train/test overlap"
        assert all(isinstance(r["label"], str) and r["label"] for s in ("train", "test") for r in data[s])
        assert len({r["text"] for r in data["train"] + data["test"]}) == len(data["train"]) + len(data["test"])
    elif t == "Clustering":
        assert len({r["text"] for r in data["test"]}) == len(data["test"]), "duplicate texts"
    elif t == "Reranking":
        qids = [r["id"] for r in data["queries"]]
        dids = [r["id"] for r in data["corpus"]]
        assert len(set(qids)) == len(qids) and len(set(dids)) == len(dids), "duplicate ids"
        assert len({r["text"] for r in data["corpus"]}) == len(dids), "duplicate corpus texts"
        rel = {}
        for r in data["qrels"]:
            assert r["query_id"] in set(qids) and r["doc_id"] in set(dids) and r["score"] == 1
            assert r["query_id"] not in rel, "more than one relevant doc"
            rel[r["query_id"]] = r["doc_id"]
        assert set(rel) == set(qids)
        referenced = set()
        cand_q = [r["query_id"] for r in data["candidates"]]
        assert sorted(cand_q) == sorted(qids)
        for r in data["candidates"]:
            ids = r["doc_ids"]
            assert len(ids) == 1 + RERANK_NEGATIVES and len(set(ids)) == len(ids) and rel[r["query_id"]] in ids
            assert set(ids) <= set(dids)
            referenced |= set(ids)
        assert referenced == set(dids), "unreferenced corpus documents"
        texts = {r["id"]: r["text"] for r in data["corpus"]}
        for q in data["queries"]:
            assert q["text"].lower() not in texts[rel[q["id"]]].lower(), "synopsis inside its description"
    elif t == "PairClassification":
        rows = data["test"]
        assert all(r["label"] in (0, 1) and isinstance(r["label"], int) for r in rows)
        assert len({r["text1"] for r in rows}) == len(rows), "an example is used twice"
        c = collections.Counter(r["label"] for r in rows)
        assert c[0] == c[1], f"unbalanced {c}"
    elif t == "STS":
        rows = data["test"]
        assert all(isinstance(r["score"], float | int) and 0 <= r["score"] <= 5 for r in rows), "score outside 0-5"
        texts = [r[k] for r in rows for k in ("text1", "text2")]
        assert len(set(texts)) == len(texts), "a text is used twice"


def word_stats(texts: list[str]) -> str:
    n = [nwords(t) for t in texts]
    return f"{len(n):,} texts, words mean {sum(n) / len(n):.1f} / max {max(n)}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sources",
        type=Path,
        required=True,
        help="folder where the Debian packages were extracted (dpkg-deb -x), holding usr/share/...",
    )
    ap.add_argument(
        "--lists",
        type=Path,
        action="append",
        default=None,
        help="folder with the bookworm main Packages/Translation-en/InRelease files (repeatable); "
        "default: <sources>/../lists, then /var/lib/apt/lists",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="tasks folder (default: %(default)s)")
    ap.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="training-corpus folder used for decontamination (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    lists = args.lists or [args.sources.resolve().parent / "lists", Path("/var/lib/apt/lists")]
    args.out.mkdir(parents=True, exist_ok=True)

    r1 = build_fortunes(args.sources, args.out)
    print(f"FortuneTopicClassification: train {r1['train']} / test {r1['test']}; test per label {r1['test_per_label']}")
    print(f"  usable per label {r1['usable']}")
    print(f"  dropped {r1['dropped']}")

    pkgs, meta = load_debian(lists)
    print(
        f"Debian index: {meta['packages_file']} + {meta['translations_file']} "
        f"({meta['release']}); {meta['stanzas']} packages with a long description; files {meta['files']}"
    )
    r2 = build_sections(pkgs, meta, args.out)
    print(f"DebianPackageSectionClustering: test {r2['test']}; per label {r2['per_label']}; pool {r2['pool']}")
    r3 = build_reranking(pkgs, meta, r2["sources"], r2["names"], args.out)
    assert not r3["names"] & r2["names"]
    print(
        f"DebianSynopsisReranking: queries {r3['queries']} / corpus {r3['corpus']}; per section {r3['per_section']}; "
        f"skipped as query {r3['skipped']}; queries naming their package {r3['name_in_query']}"
    )

    r4 = build_wordnet_pairs(args.sources, args.corpus, args.out)
    print(f"WordNetVerbSensePairClassification: test {r4['test']} {r4['labels']}; {r4['stats']}")

    for r in (r1, r2, r3, r4):
        validate(r["folder"])
    print("validated: JSONL, keys, non-empty texts, unique ids, train/test disjoint, counts = task.json n")
    print("length (whitespace words):")
    print(f"  FortuneTopic: {word_stats(r1['texts'])}")
    print(f"  DebianPackageSection: {word_stats(r2['texts'])}")
    print(f"  DebianSynopsis: queries {word_stats(r3['query_texts'])}; docs {word_stats(r3['doc_texts'])}")
    print(f"  WordNetVerbSense: text1 {word_stats(r4['text1'])}; text2 unique {word_stats(sorted(set(r4['text2'])))}")


if __name__ == "__main__":
    main()
