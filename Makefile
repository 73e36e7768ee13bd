# Local stack targets (the carts brief's `make docker.start.local`). Needs Docker with Compose v2.
# .env holds the secrets compose.yml reads; the first start copies .env.example, change it then.
COMPOSE ?= docker compose

.PHONY: docker.start.local docker.stop.local docker.down.local docker.logs.local docker.tools.local

.env:
	cp .env.example .env
	@echo "made .env from .env.example: change its secrets before anything but a local try"

# Redis, PostgreSQL (5432, postgres/changeme), MySQL (3306), Jaeger, three nodes and presence
# clients; returns once every healthcheck passes.
docker.start.local: .env
	$(COMPOSE) up -d --build --wait

# The same plus pgAdmin on http://localhost:5050.
docker.tools.local: .env
	$(COMPOSE) --profile tools up -d --build --wait

docker.logs.local:
	$(COMPOSE) logs -f node1 node2 node3

# Stops the containers (SIGTERM: the nodes hand off and drain), keeps the volumes.
docker.stop.local:
	$(COMPOSE) --profile tools --profile dating stop

# Removes the containers and the volumes: every stored cart, event and actor state goes.
docker.down.local:
	$(COMPOSE) --profile tools --profile dating down --volumes
