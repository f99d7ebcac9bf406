# Developer shortcuts. `make test` is the pytest part of the README's test command
# (scripts/test.sh, which also sets up both environments and the data first).
PY ?= .venv/bin/python
PY_LAVA ?= .venv-lava/bin/python

.PHONY: test test-lava bench

# The main suite on one thread, then on the default thread count (order-dependent float tests
# fail here, not only on another machine); then the Lava suite once.
test:
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PY) -m pytest tests --ignore=tests/lava -q
	env -u OMP_NUM_THREADS -u MKL_NUM_THREADS -u OPENBLAS_NUM_THREADS $(PY) -m pytest tests --ignore=tests/lava -q
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
