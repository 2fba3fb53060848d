# The two set-up commands of the README. Both create or reuse .venv first.
.PHONY: emodb recola test venv

venv:
	bash local/setup_env.sh

# Run the EmoDB recipe end to end (synthetic look-alike corpus unless EMODB=/path/to/emodb).
emodb: venv
	bash recipes/emodb/run.sh $(if $(EMODB),--corpus-dir $(EMODB),)

# Run the RECOLA / AVEC 2016 recipe end to end (synthetic unless RECOLA=/path/to/avec2016).
recola: venv
	bash recipes/recola/run.sh $(if $(RECOLA),--corpus-dir $(RECOLA),)

# Run the test suite.
test: venv
	.venv/bin/python -m pytest tests
