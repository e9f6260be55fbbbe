# The two commands of the README: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test model clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,mlflow]'
	touch $@

demo: install
	$(BIN)/recog demo

test: install
	$(BIN)/ruff check recog jobs tests bench
	$(BIN)/python -m pytest

# Rebuild the built-in vehicle-types model from ../shared/data (recog/dataset: every source's crops
# and real negatives, mapped to the traffic taxonomy, split camera-disjoint; the val cameras choose
# the epoch, the test cameras are only reported on), then score it on the held-out split. The
# package lands in recog/models/vehicle_types/; the figures in recog-data/models/vehicle-types/eval.md.
SHARED ?= ../shared/data
TRAFFIC := recog-data/traffic
MODEL_OUT := recog-data/models/vehicle-types
DATA_SOURCE := LTA expressway CCTV: contains information from Traffic Images accessed on 20 Mar 2021 from data.gov.sg, made available under the Singapore Open Data Licence v1.0; its boxes from the GitHub repository qzq92/CapstoneProj-G.A, GPL-3.0. "A Dataset Containing Tiny and Low Quality Images for Vehicle Classification", Zenodo record 6634554, CC BY 4.0. CIFAR-10 (Krizhevsky, 2009). Sample pictures of scikit-image (BSD-3-Clause). Crops of the shared clips typed by hand (recog/dataset/clips.csv): ahmetozlu/vehicle_counting_tensorflow (MIT), andrewssobral/bgslibrary (MIT), intel-iot-devkit/sample-videos (CC BY 4.0)
model: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[model]'
	$(BIN)/python -m recog.dataset.build --shared $(SHARED) --to $(TRAFFIC)
	rm -rf $(TRAFFIC)-shards
	$(BIN)/recog shards --from $(TRAFFIC)/train --to $(TRAFFIC)-shards/train --per-shard 1000
	$(BIN)/recog shards --from $(TRAFFIC)/val --to $(TRAFFIC)-shards/val --per-shard 1000
	$(BIN)/recog train --train '$(TRAFFIC)-shards/train-*.tar' --val '$(TRAFFIC)-shards/val-*.tar' --output $(MODEL_OUT) \
		--name vehicle-types --frozen-stages 4 --image-size 128 --augment crops --balance-classes \
		--epochs 8 --lr 1e-3 --batch-size 64 --workers 2 --restart --data-source '$(DATA_SOURCE)'
	cp $(MODEL_OUT)/model.json $(MODEL_OUT)/weights.pt recog/models/vehicle_types/
	$(BIN)/python -m recog.dataset.evaluate --set $(TRAFFIC) --model vehicle-types --photos $(SHARED)/photos | tee $(MODEL_OUT)/eval.md

clean:
	rm -rf $(VENV) recog-data .pytest_cache
