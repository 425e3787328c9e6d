# The predictions database: copy an embedded SQLite history into a server database.

FROM ?=
TO ?=

.PHONY: migrate-store
migrate-store: $(STAMP) ## Copy the SQLite history (FROM, default var/churnops.db) into TO (default DATABASE_URL), verified; safe to re-run
	$(CLI) migrate-store $(if $(FROM),--from '$(FROM)') $(if $(TO),--to '$(TO)')
