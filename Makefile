# Developer shortcuts. `make test` is the pytest part of the README's test command
# (scripts/test.sh, which also sets up both environments and the data first).
PY ?= .venv/bin/python
PY_LAVA ?= .venv-lava/bin/python

.PHONY: test test-lava bench

test:
	$(PY) -m pytest tests --ignore=tests/lava -q
	@if [ -x $(PY_LAVA) ]; then $(MAKE) --no-print-directory test-lava; \
	else echo "skipping the Lava suite: $(PY_LAVA) missing (bash scripts/setup_lava.sh)"; fi

test-lava:
	$(PY_LAVA) -m pytest tests/lava -m lava -q -p no:cacheprovider

# One JSON object per line, each with a "name".
bench:
	$(PY) bench/bench_sim.py

# compile of the paper-scale V2 models for loihi2 (Lava bundle included): wall, CPU, peak memory,
# one JSON object per line (bench/bench_compile.py; checkpoints cached in $TMPDIR)
.PHONY: bench-compile
bench-compile:
	$(PY) bench/bench_compile.py
