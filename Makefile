# The two set-up commands of the README. Each installs what it needs on a fresh machine.
.PHONY: run test lint

run:
	scripts/setup.sh cpu,local
	scripts/run.sh

test:
	scripts/setup.sh cpu,test
	scripts/test.sh

lint:
	scripts/setup.sh cpu,test
	.venv/bin/ruff check serve_app tests bench
	.venv/bin/ruff format --check serve_app tests bench
	.venv/bin/mypy serve_app
