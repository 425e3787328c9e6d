#!/bin/bash
# The part of the official image's entrypoint that stack.yml uses: the bootstrap password of
# `elastic` from ELASTIC_PASSWORD_FILE (or ELASTIC_PASSWORD), and every environment variable whose
# name has a dot (e.g. discovery.type) passed as an -E setting.
set -euo pipefail
if [ -n "${ELASTIC_PASSWORD_FILE:-}" ]; then ELASTIC_PASSWORD=$(<"$ELASTIC_PASSWORD_FILE"); fi
if [ -n "${ELASTIC_PASSWORD:-}" ]; then
  [ -f config/elasticsearch.keystore ] || elasticsearch-keystore create >/dev/null
  printf '%s' "$ELASTIC_PASSWORD" | elasticsearch-keystore add -x -f bootstrap.password
fi
# The integ-test zip has no analysis-common module, which the native realm's .security index needs
# (its email analyzer): users cannot be created through the API here. The stand-in defines the
# services' least-privilege user in the file realm instead, with the role of
# deploy/swarm/es_security.py (config/roles.yml, written by the test from WRITER_ROLE).
if [ -r /run/secrets/es_writer_password ]; then
  users=config/users
  if ! grep -q '^churnops_writer:' "$users" 2>/dev/null; then
    elasticsearch-users useradd churnops_writer -r churnops_writer \
      -p "$(</run/secrets/es_writer_password)" >/dev/null
  fi
fi
settings=()
while IFS= read -r -d '' pair; do
  name=${pair%%=*}
  [[ $name =~ ^[a-z0-9_]+\.[a-z0-9_.]+$ ]] && settings+=("-E$pair")
done < <(env -0)
unset ELASTIC_PASSWORD
exec elasticsearch "${settings[@]}" "$@"
