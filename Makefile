# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Two cores: one torch thread pool per process, sized to the machine.
export OMP_NUM_THREADS ?= $(shell nproc)

.PHONY: install demo test bench clean-outputs

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pate-lightning prepare --data_dir data
	$(VENV)/bin/pate-lightning pipeline --config configs/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.bench_teachers --out benchmarks/results/latest.json

# Every output pate_lightning/layout.py names for the default run dir (the working directory); tests/test_layout.py
# keeps the list in step. logs/ and checkpoints/ are tracked (.gitkeep), so only their contents go.
clean-outputs:
	rm -rf shard_indices.json teachers teacher_vaes public_vae union_vae trained_nets candidates logs/* checkpoints/* reference \
		synthetic pate private dp_sgd_student generator_student run_summary.json pipeline_state.json .pipeline .pipeline.lock figures
