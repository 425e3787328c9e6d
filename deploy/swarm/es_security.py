"""Swarm bootstrap of Elasticsearch security, run by the stack's `setup` job before the templates.

Mounted as a config at /app/deploy/swarm/es_security.py, run as `python deploy/swarm/es_security.py`
with the `elastic` credentials (ES_URL, ES_USERNAME, ES_PASSWORD_FILE). Idempotent:

* sets the `kibana_system` password from /run/secrets/kibana_password (Kibana logs in with it);
* creates the role `churnops_writer` (read/write on churnops-* only, cluster monitor) and the user
  `churnops_writer` with the password of /run/secrets/es_writer_password, which the API, the agent
  and Logstash use instead of the superuser.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core.monitoring.es import ES_ERRORS, from_settings, wait_ready
from core.settings import get_settings

WRITER = "churnops_writer"
WRITER_ROLE = {
    "cluster": ["monitor"],
    "indices": [
        {
            "names": ["churnops-*"],
            "privileges": [
                "read",
                "write",
                "create_index",
                "auto_configure",
                "view_index_metadata",
            ],
        }
    ],
}


def _secret(name: str) -> str:
    path = Path(os.environ.get("SECRETS_PATH", "/run/secrets")) / name
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < 6:
        raise ValueError(f"{path}: an Elasticsearch password needs 6 characters or more")
    return value


def main() -> int:
    """Wait for the cluster, then apply the users and roles; exit 1 on any failure."""
    client = from_settings(get_settings())
    try:
        wait_ready(client, timeout=float(os.environ.get("ES_WAIT", "600")), interval=5.0)
        client.security.change_password(
            username="kibana_system", password=_secret("kibana_password")
        )
        client.security.put_role(name=WRITER, body=WRITER_ROLE)
        client.security.put_user(
            username=WRITER,
            password=_secret("es_writer_password"),
            roles=[WRITER],
            full_name="churnops services",
        )
    except (*ES_ERRORS, ValueError, OSError) as exc:
        print(f"es_security: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print('{"es_security": "ok", "users": ["kibana_system", "churnops_writer"]}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
