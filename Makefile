# edgepose: `make demo` runs the main job (export + bench on this machine), `make test` the tests.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= export,tflite,device,bench,accuracy,weights,dev

.PHONY: venv demo test test-fast lint format mutation clean emulated-rpi4 emulated-rpi4-stop

$(BIN)/edgepose: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $@

venv: $(BIN)/edgepose

# Export the LitePose table's models, time them on this machine, print the reproduced table. --agree adds
# each artifact's agreement AP with its PyTorch model (4 bundled photos; about a minute for the 9 models).
demo: venv
	$(BIN)/edgepose models --family litepose
	$(BIN)/edgepose bench --device host --paper litepose --quick --no-pipeline --agree --out artifacts/demo/host.jsonl --format none
	$(BIN)/edgepose report --paper litepose --records artifacts/demo/host.jsonl --plot artifacts/demo/litepose.png

test: venv
	$(BIN)/python -m pytest -n 2 --dist worksteal -q --durations=15

test-fast: venv
	$(BIN)/python -m pytest -n 2 --dist worksteal -q -m "not slow"

# An emulated Raspberry Pi 4 (arm64 Debian under qemu, sshd on 127.0.0.1:2222): docs/emulated.md.
emulated-rpi4:
	@devices/emulated/rpi4.sh up

emulated-rpi4-stop:
	@devices/emulated/rpi4.sh stop

lint: venv
	$(BIN)/ruff check edgepose tests benchmarks
	$(BIN)/ruff format --check edgepose tests benchmarks

# Mutation testing of the modules that decide correctness (tests/mutation/modules.toml, docs/testing.md):
# every module, or one: `make mutation MODULE=parity`. One mutant at a time, niced: minutes per module.
mutation: venv
	nice -n 10 $(BIN)/python tests/mutation/run.py $(MODULE)

format: venv
	$(BIN)/ruff format edgepose tests benchmarks
	$(BIN)/ruff check --fix edgepose tests benchmarks

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache
