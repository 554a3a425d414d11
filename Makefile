# Timebank — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMMUNITY ?= demo

.PHONY: run test bench soak simulate package deploy destroy ledger-check import-residents vendor-echarts clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'pip==26.2.1'  # chalice 1.34 requires pip<26.3
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Start the whole system locally on an embedded moto endpoint: http://127.0.0.1:8000
run: $(STAMP)
	$(PY) -m local.run

## The whole test suite.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

## Print DynamoDB calls/items per business operation and cold import times.
bench: $(STAMP)
	$(PY) -m bench

## make run under a day of traffic, with and without the moto compat layer: make soak [ORDERS=2000]
soak: $(STAMP)
	$(PY) -m bench soak $(if $(ORDERS),--orders $(ORDERS),)

## Ten simulated months of the pilot community through the real handlers on moto: make simulate [SCALE=1.0] [SEED=1] [PROCESSES=2]
simulate: $(STAMP)
	$(PY) -m sim $(if $(SCALE),--scale $(SCALE),) $(if $(SEED),--seed $(SEED),) $(if $(PROCESSES),--processes $(PROCESSES),)

## Build the deployable artefacts: make package COMMUNITY=demo (or COMMUNITY="demo fuyuan", or all)
package: $(STAMP)
	$(PY) -m infra.package $(if $(filter all,$(COMMUNITY)),--all,--community $(COMMUNITY))

## Deploy a packaged community (infra/README.md): make deploy COMMUNITY=demo [DRY_RUN=1]
deploy: $(STAMP)
	$(PY) -m infra.deploy deploy --community $(COMMUNITY) $(if $(DRY_RUN),--dry-run,)

## Delete a community's stack: make destroy COMMUNITY=demo CONFIRM=demo [DELETE_DATA=1] [DRY_RUN=1]
destroy: $(STAMP)
	$(PY) -m infra.deploy destroy --community $(COMMUNITY) $(if $(DRY_RUN),--dry-run,) $(if $(CONFIRM),--confirm $(CONFIRM),) $(if $(DELETE_DATA),--delete-data,)

## Check the ledger invariants against the configured endpoint (local moto or AWS).
ledger-check: $(STAMP)
	$(PY) -m functions.ledger.cli check

## The roster import for district IT: make import-residents COMMUNITY=<id> FILE=<xlsx|csv> [DRY_RUN=1]
## (against the configured endpoint: AWS_ENDPOINT_URL for make run's moto, the account otherwise)
import-residents: $(STAMP)
	@test -n "$(FILE)" || (echo "usage: make import-residents COMMUNITY=<id> FILE=<xlsx|csv> [DRY_RUN=1]" && false)
	TIMEBANK_COMMUNITY=$(COMMUNITY) $(PY) -m local.import_residents import-residents "$(FILE)" $(if $(DRY_RUN),--dry-run,)

## Re-fetch the staff dashboard's ECharts from npm and check its sha256 (the file is committed).
vendor-echarts: $(STAMP)
	$(PY) -m infra.echarts $(if $(CHECK),--check,)

clean:
	rm -rf $(VENV) build dist .pytest_cache *.egg-info
