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

# Rebuild the built-in vehicle-types model from the Zenodo traffic-camera crops in ../shared/data
# (train split to fit, val split to choose the epoch); the package lands in recog/models/vehicle_types/.
SHARED ?= ../shared/data
ZENODO := recog-data/zenodo
ZENODO_SOURCE := "A Dataset Containing Tiny and Low Quality Images for Vehicle Classification", Zenodo record 6634554 (https://zenodo.org/records/6634554), CC BY 4.0
model: install
	rm -rf $(ZENODO)
	$(BIN)/recog shards --from $(SHARED)/photos/zenodo/train --to $(ZENODO)/train --per-shard 500
	$(BIN)/recog shards --from $(SHARED)/photos/zenodo/val --to $(ZENODO)/val --per-shard 500
	$(BIN)/recog train --train '$(ZENODO)/train-*.tar' --val '$(ZENODO)/val-*.tar' --output recog-data/models/vehicle-types \
		--name vehicle-types --types bike=motorcycle,juggernaut=truck,minibus=van --frozen-stages 6 \
		--epochs 4 --lr 1e-3 --batch-size 32 --workers 2 --restart \
		--data-source '$(ZENODO_SOURCE)'
	cp recog-data/models/vehicle-types/model.json recog-data/models/vehicle-types/weights.pt recog/models/vehicle_types/

clean:
	rm -rf $(VENV) recog-data .pytest_cache
