# Two entry points: `make demo` (a quick search) and `make test` (lint + tests: two
# pytest-xdist workers, each file on one of them, one torch thread each: tests/conftest.py).
# Both set up .venv, the package and Fashion-MNIST first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test setup data lint clean

demo: setup data
	$(BIN)/netadjust search --preset quick --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: setup data
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest -n 2 --dist loadfile

setup: $(VENV)/.installed

# torch is pinned here (the CPU wheel this machine has on disk); the package itself asks
# only for torch>=2.2, so on a CUDA machine install the build you want first.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet torch==2.13.0
	# the zoos (extra netadjust[zoo]) at the versions built for that torch; torchvision without
	# its dependencies, which would replace the CPU torch with a CUDA build
	$(BIN)/pip show torchvision >/dev/null 2>&1 || $(BIN)/pip install --quiet --no-deps torchvision==0.28.0
	$(BIN)/pip install --quiet timm==1.0.31
	$(BIN)/pip install --quiet -e ".[test,zoo]"
	touch $@

# Fashion-MNIST from Debian's package where apt works; otherwise pass --data-dir yourself.
data:
	@if [ ! -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			(apt-get install -y -qq dataset-fashion-mnist || \
			 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null; \
		else \
			echo "Fashion-MNIST not in $(FASHION_DIR): run 'sudo apt-get install dataset-fashion-mnist'," \
			     "or use 'netadjust search --download --data-dir DIR'"; \
		fi; \
	fi

clean:
	rm -rf $(VENV) runs
