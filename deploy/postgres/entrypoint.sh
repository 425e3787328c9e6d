#!/bin/sh
# The db image's entrypoint: on the first start (an empty PGDATA) make the cluster, with the
# superuser `postgres` reachable only through the local socket (peer authentication: backups with
# `docker exec <task> pg_dump -U postgres`), and the application's role POSTGRES_USER, owner of
# POSTGRES_DB, with the password of the secret file POSTGRES_PASSWORD_FILE (scram-sha-256 over
# TCP). Then run the server in the foreground as PID 1.
set -eu
: "${PGDATA:?}" "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"
: "${POSTGRES_PASSWORD_FILE:?set POSTGRES_PASSWORD_FILE to the secret file of the password}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password=$(cat "$POSTGRES_PASSWORD_FILE")
    [ -n "$password" ] || { echo "db: $POSTGRES_PASSWORD_FILE is empty" >&2; exit 1; }
    initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # every address may connect, the application's role to its database only, with the password
    printf 'host %s %s all scram-sha-256\n' "$POSTGRES_DB" "$POSTGRES_USER" >> "$PGDATA/pg_hba.conf"
    quoted=$(printf '%s' "$password" | sed "s/'/''/g")
    # single-user mode: no listening socket while the roles are made; the password goes through
    # stdin, never argv
    printf "CREATE ROLE \"%s\" LOGIN PASSWORD '%s';\n\nCREATE DATABASE \"%s\" OWNER \"%s\";\n\n" \
        "$POSTGRES_USER" "$quoted" "$POSTGRES_DB" "$POSTGRES_USER" \
        | postgres --single -D "$PGDATA" -j postgres >/dev/null
    echo "db: cluster created in $PGDATA (role $POSTGRES_USER, database $POSTGRES_DB)"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
