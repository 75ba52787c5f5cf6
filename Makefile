# The two commands of the README. Each builds (or reuses) the cached stack it needs
# with tools/setup_env.sh: the first build of a stack takes 15-25 minutes, later
# runs reuse it.
#   make demo   trains the demo on the pinned stack (torch 2.13): tiny models, minutes
#   (make demo-full: the 128-px demo configs, about 35 minutes on 2 cores)
#   make test   flake8 + isort, the full suite on the pinned stack, then the classic
#               subset on the classic stack (torch 2.1.2, mmengine 0.10.3)
PYTHON := .venv/bin/python
CLASSIC_PYTHON := .venv-classic/bin/python
PYTEST := -m pytest -q -p no:cacheprovider
# On the classic stack: the framework-free core and optimizers (discovery on stock
# Faster R-CNN and FCN among them), the version checks and fixes, resume guards,
# and mmwrs installed as a user installs it (mmdet's own train.py + resume).
CLASSIC_TESTS := tests/test_core tests/test_optim tests/test_compat.py \
	tests/test_compat_resume.py tests/test_install

.PHONY: env env-classic demo demo-full lint test test-pinned test-classic
env:
	bash tools/setup_env.sh pinned

env-classic:
	bash tools/setup_env.sh classic

demo: env
	$(PYTHON) tools/run_demo.py

demo-full: env
	$(PYTHON) tools/run_demo.py --full

test: lint test-pinned test-classic

# The lint tools need no torch: a small venv of their own, rebuilt when their pins change.
# The stamp, not the interpreter: bin/python is a link whose time is the system
# python's, older than any pin file, so it would rebuild the venv on every call.
LINT_PYTHON := .venv-lint/bin/python
LINT_STAMP := .venv-lint/installed
LINTED := mmwrs tools tests configs
$(LINT_STAMP): requirements/lint.txt
	rm -rf .venv-lint
	python3 -m venv .venv-lint
	$(LINT_PYTHON) -m pip install -q --disable-pip-version-check -r requirements/lint.txt
	touch $(LINT_STAMP)

lint: $(LINT_STAMP)
	$(LINT_PYTHON) -m flake8 $(LINTED)
	$(LINT_PYTHON) -m isort --check-only --diff $(LINTED)

test-pinned: env
	$(PYTHON) $(PYTEST) tests

test-classic: env-classic
	$(CLASSIC_PYTHON) $(PYTEST) $(CLASSIC_TESTS)
