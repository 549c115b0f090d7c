# Google Cloud: `make deploy PROJECT=... REGION=...`, `make smoke`, `make destroy` (README "In the cloud"),
# and the tools `make test` needs to check terraform/ offline. Included from the Makefile.
#   REGION=europe-west4                             default us-central1, then the region deployed before
#   VARS='model=gemini-2.5-pro max_active_jobs=4'   settings for terraform/variables.tf, kept for later deploys
#   FORCE=1                                         make destroy also deletes what the buckets hold
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
PROVIDER_SCHEMA := .cache/provider-schema/cdktn_provider_google-21.1.0-py3-none-any.whl

.PHONY: deploy smoke destroy

deploy: $(STAMP)
	$(PY) -m deploy deploy --project "$(PROJECT)"$(if $(REGION), --region "$(REGION)")$(if $(VARS), --vars '$(VARS)')

smoke: $(STAMP)
	$(PY) -m deploy smoke$(if $(PROJECT), --project "$(PROJECT)")

destroy: $(STAMP)
	$(PY) -m deploy destroy$(if $(PROJECT), --project "$(PROJECT)")$(if $(FORCE), --force)

# checkov lives apart: it pulls bc-python-hcl2, which clashes with python-hcl2 in .venv.
$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# The google provider's schema, read offline by tests/unit/test_terraform.py (a 67 MB wheel, downloaded once).
$(PROVIDER_SCHEMA): | $(STAMP)
	$(PY) -m tests.unit.terraform_schema fetch

test: $(CHECKOV_STAMP) $(PROVIDER_SCHEMA)
