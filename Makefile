# The two commands of the README. Both set up everything on a fresh machine first.
#   make course   JupyterLab on course/ (the student notebooks)
#   make test     the whole test suite: ntklib, notebooks, the nbgrader pipeline, the browser
VENV ?= .venv
PORT ?= 8888
NOTEBOOK_DIR ?= course
JUPYTER_FLAGS ?=

.PHONY: setup course test benchmarks
setup:
	@bash scripts/bootstrap.sh

course: setup
	$(VENV)/bin/jupyter lab --notebook-dir=$(NOTEBOOK_DIR) --port=$(PORT) $(JUPYTER_FLAGS) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

benchmarks: setup
	$(VENV)/bin/python benchmarks/run_all.py
