# cordbench — set-up, demo and tests on a fresh machine (idempotent).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# re-install when the declared dependencies change
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg constraints.txt | cksum | cut -d' ' -f1)
DEMO_OUT ?= outputs/demo

.PHONY: setup system-deps demo ablation lint test test-fast test-slurm bench mutations clean

setup: $(STAMP)

$(STAMP): setup.cfg constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first (a bare `torch` would pull a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat
	@rm -f $(VENV)/.installed-*
	@touch $@

# system packages some tests use (headless Chromium for report screenshots, ssh for `ray up`)
system-deps:
	@bash .ci/system-deps.sh

# The main job on the built-in phantom: a 24-subject cohort (with DWI), the U-Net trained and tested
# on it, the quickstart sweep (all five models, small presets with their training recipes, one budget,
# 2 seeds, 10 held-out subjects) on the same cohort, and the statistical leaderboard (Markdown here;
# HTML/PNG reports under $(DEMO_OUT)/sweeps/quickstart). Add the morphometric columns (per-level CSA error of
# every model's masks, ~1 min per trial on 2 cores) with
# `cordbench leaderboard $(DEMO_OUT)/sweeps/quickstart --morphometrics`.
demo: setup
	$(BIN)/cordbench phantom --out $(DEMO_OUT)/phantom --subjects 24 --seed 0
	$(BIN)/cordbench fit --config configs/demo.yaml --root $(DEMO_OUT)/phantom --output-dir $(DEMO_OUT)/unet --overwrite
	@echo "quickstart budget: every model 5 epochs x 28 batches of 8 slices (48x48) on 1 CPU, 2 seeds - a laptop demo, not converged training (docs/models.md)"
	$(BIN)/cordbench sweep configs/sweeps/quickstart.yaml --storage $(DEMO_OUT)/sweeps --overwrite \
		--override config.data.root=$(abspath $(DEMO_OUT))/phantom
	$(BIN)/cordbench leaderboard $(DEMO_OUT)/sweeps/quickstart --no-morphometrics --no-precision

# The seed's skip-connection ablation in miniature (SAttisUNet small, 0..2 attentive skips x 2 seeds on the
# quickstart cohort; <= 15 min on 2 CPU cores): its leaderboard prints the table per skip count (mean, 95% CI)
# and writes the plot $(DEMO_OUT)/sweeps/ablation_laptop/leaderboard/ablation_skip_connections.png.
ablation: setup
	$(BIN)/cordbench phantom --out $(DEMO_OUT)/phantom --subjects 24 --seed 0
	$(BIN)/cordbench sweep configs/sweeps/ablation_laptop.yaml --storage $(DEMO_OUT)/sweeps --overwrite \
		--override config.data.root=$(abspath $(DEMO_OUT))/phantom
	$(BIN)/cordbench leaderboard $(DEMO_OUT)/sweeps/ablation_laptop --no-morphometrics

# Tests in two tiers (markers in setup.cfg). `make test` runs everything, on two pytest workers
# (pytest-xdist; each module's tests, the tiny sweep's and the GM run's stay on one worker, see
# tests/conftest.py); it is what CI runs. `make test-fast` leaves out the tests that train models
# end to end (slow), start Ray, run the CLI in a child process, train DDP ranks or need a server or
# browser: unit tests and small in-process integrations.
FAST_TESTS := not slow and not ray and not subprocess and not ddp and not services
PYTEST_WORKERS ?= 2

# The layers (import-linter contracts in pyproject.toml), lint and format (ruff): seconds, before every test tier.
lint: setup
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup system-deps lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope -m "not slurm" --durations=15

# The real SLURM cluster tests (a sweep submitted with `cordbench slurm submit`, then one requeued mid-run):
# about 2.5 min, on their own so that `make test` keeps its 8-minute limit. CI runs both (.ci/run).
test-slurm: setup system-deps
	$(BIN)/python -m pytest -q -m slurm --durations=5

test-fast: setup lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope -m "$(FAST_TESTS)" --durations=15

bench: setup
	$(BIN)/python benchmarks/foundation.py

# Mutation check (not part of `make test`): each curated bug of tests/mutations/catalogue.py is put
# into a temporary copy and the fast tests of its module must fail; prints survivors and run time.
mutations: setup
	$(BIN)/python tests/mutations/run.py

clean:
	rm -rf outputs .pytest_cache
