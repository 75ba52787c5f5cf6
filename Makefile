# The two commands of the README. Both (re)use the cached pinned stack that
# tools/setup_env.sh builds on first use (about 15 minutes, then seconds).
PYTHON := .venv/bin/python

.PHONY: env demo test
env:
	bash tools/setup_env.sh

demo: env
	$(PYTHON) tools/run_demo.py

test: env
	$(PYTHON) -m pytest tests -q -p no:cacheprovider
