# qwenvl-diag: `make lab` opens the main notebook, `make test` runs the whole suite in both stacks.
PYTHON ?= python3
PIP_FLAGS ?= --quiet --disable-pip-version-check
CURRENT := .venv
LEGACY := .venv-legacy

.PHONY: lab lab-envs test test-current test-legacy docs post bench lint clean refresh

# The "current" stack: newest transformers 5.x, with the notebook extras.
$(CURRENT)/.installed: pyproject.toml requirements/current.txt
	test -x $(CURRENT)/bin/python || $(PYTHON) -m venv $(CURRENT)
	$(CURRENT)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(CURRENT)/bin/pip install $(PIP_FLAGS) -r requirements/current.txt -e ".[notebooks,test,docs]"
	touch $@

# The "legacy" stack: transformers 4.51.3 + accelerate 1.6.0, where the seed's failures live; it also runs
# the Ray tests (the cluster extra), the shorter of the two stacks' runs.
$(LEGACY)/.installed: pyproject.toml requirements/legacy.txt
	test -x $(LEGACY)/bin/python || $(PYTHON) -m venv $(LEGACY)
	$(LEGACY)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(LEGACY)/bin/pip install $(PIP_FLAGS) -r requirements/legacy.txt -e ".[notebooks,test,docs,cluster]"
	touch $@

# The version lab's side environment of transformers 4.51.3 (where the seed's failures live), made once
# so that 01_reproduce.ipynb shows them on the current stack without downloading anything while it runs.
lab-envs: $(CURRENT)/.installed
	$(CURRENT)/bin/python -c "from qwenvl_diag.versions import side_env; print(side_env('4.51.3'))"

# Offline, the side environment cannot be made: JupyterLab opens anyway, and the notebook says so.
lab: $(CURRENT)/.installed
	-$(MAKE) --no-print-directory lab-envs
	$(CURRENT)/bin/jupyter lab notebooks/01_reproduce.ipynb

# both stacks at once, one per core (their side environments are their own: test-output/envs keys them by
# the stack's installed packages), each stack's output kept together. The two stacks are installed first,
# one after the other: two pip runs unpacking a CUDA torch at once filled a CI machine's disk.
test: $(CURRENT)/.installed $(LEGACY)/.installed
	$(MAKE) --no-print-directory -j2 --output-sync=target test-current test-legacy

test-current: $(CURRENT)/.installed
	$(CURRENT)/bin/python -m pytest

test-legacy: $(LEGACY)/.installed
	$(LEGACY)/bin/python -m pytest

# The documentation site, offline, into site/ (warnings are errors), and a notebook as a Markdown post. Both
# run the notebooks in the legacy stack by default, where the seed's failures fail on the page (STACK=.venv
# for the current one); the test suite's executed notebooks are reused (test-output/executed).
STACK ?= $(LEGACY)
NB ?= 01
POSTS ?= posts
docs: $(STACK)/.installed
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(STACK)/bin/mkdocs build --strict --quiet

post: $(STACK)/.installed
	$(STACK)/bin/python scripts/notebooks.py post $(NB) --to $(POSTS)

bench: $(CURRENT)/.installed
	$(CURRENT)/bin/python benchmarks/bench_import.py
	$(CURRENT)/bin/python benchmarks/bench_explain.py
	$(CURRENT)/bin/python benchmarks/bench_models.py
	$(CURRENT)/bin/python benchmarks/bench_plan.py
	$(CURRENT)/bin/python benchmarks/bench_simulate.py
	$(CURRENT)/bin/python benchmarks/bench_engines.py
	$(CURRENT)/bin/python benchmarks/bench_notebooks.py
	$(CURRENT)/bin/python benchmarks/bench_sweep.py --no-realistic

# The release-day routine: index the transformers releases the kit has not seen, pair each new minor with
# its accelerate, pin the newest in the current stack, run the catalogue in them, report (README).
refresh: $(CURRENT)/.installed
	$(CURRENT)/bin/python scripts/refresh.py $(RELEASES)
	$(CURRENT)/bin/python scripts/build_pins.py

lint: $(CURRENT)/.installed
	$(CURRENT)/bin/ruff format --check qwenvl_diag tests benchmarks notebooks scripts docs
	$(CURRENT)/bin/ruff check qwenvl_diag tests benchmarks notebooks scripts docs

clean:
	rm -rf $(CURRENT) $(LEGACY) .pytest_cache test-output site posts .cache
