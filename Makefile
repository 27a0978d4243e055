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
	$(VENV)/bin/pate-lightning fit --config configs/teacher_vae.yaml --data.teacher_ids='[0,1,2]' \
		--data.run_dir=runs/demo --trainer.max_epochs=20 --trainer.enable_progress_bar=false
	@echo "demo outputs: runs/demo/teacher_vaes/teacher_{0,1,2}/ (samples.png, decoder.pth, training_report.json)"
	@echo "TensorBoard:  $(VENV)/bin/tensorboard --logdir runs/demo/logs"

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_teachers.py --out benchmarks/results/latest.json

clean-outputs:
	rm -rf teacher_vaes teachers trained_nets candidates pate run_summary.json shard_indices.json
