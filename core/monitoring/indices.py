"""Index names and the committed Elasticsearch templates under ``deploy/elasticsearch/``.

Every churnops index starts with a prefix (``churnops`` in production); tests use their own prefix
so they never see each other's data. The committed JSON spells the production prefix; loading
with another prefix rewrites the names consistently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the client is only an annotation here: the names load without it
    from elasticsearch import Elasticsearch

ELASTIC_VERSION = "8.19.21"
"""The Elastic stack version: the test zip, the stack images and the Kibana ndjson all use it."""

DEFAULT_PREFIX = "churnops"
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"

EventKind = Literal["prediction", "drift", "host", "quality", "log", "model_metric"]


@dataclass(frozen=True)
class Indices:
    """The index / data stream names for one prefix."""

    prefix: str = DEFAULT_PREFIX

    @property
    def model_metrics(self) -> str:
        """Regular index of MLflow metric points (overwritten by ``_id``)."""
        return f"{self.prefix}-model-metrics"

    @property
    def predictions(self) -> str:
        """Data stream of prediction events."""
        return f"{self.prefix}-predictions"

    @property
    def drift(self) -> str:
        """Data stream of drift results."""
        return f"{self.prefix}-drift"

    @property
    def host(self) -> str:
        """Data stream of host and container metrics."""
        return f"{self.prefix}-host"

    @property
    def quality(self) -> str:
        """Data stream of live quality snapshots."""
        return f"{self.prefix}-quality"

    @property
    def logs(self) -> str:
        """Data stream of application logs."""
        return f"{self.prefix}-logs"

    def for_kind(self, kind: str) -> str:
        """The target of an event kind (see :data:`EventKind`).

        Raises:
            ValueError: for an unknown kind.
        """
        names = {
            "prediction": self.predictions,
            "drift": self.drift,
            "host": self.host,
            "quality": self.quality,
            "log": self.logs,
            "model_metric": self.model_metrics,
        }
        if kind not in names:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(names)}")
        return names[kind]

    def all(self) -> list[str]:
        """Every index / data stream name."""
        return [
            self.model_metrics,
            self.predictions,
            self.drift,
            self.host,
            self.quality,
            self.logs,
        ]


@dataclass(frozen=True)
class Templates:
    """The component and index templates, by name, ready to PUT."""

    components: dict[str, dict[str, Any]]
    indices: dict[str, dict[str, Any]]

    def mapping_properties(self, index_template: str) -> dict[str, Any]:
        """The merged mapping ``properties`` an index of ``index_template`` gets."""
        merged: dict[str, Any] = {}
        body = self.indices[index_template]
        for name in body.get("composed_of", []):
            props = self.components[name].get("template", {}).get("mappings", {})
            _merge(merged, props.get("properties", {}))
        _merge(merged, body.get("template", {}).get("mappings", {}).get("properties", {}))
        return merged


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if key in into and "properties" in into[key] and "properties" in value:
            _merge(into[key]["properties"], value["properties"])
        else:
            into[key] = json.loads(json.dumps(value))


def field_paths(properties: dict[str, Any], parent: str = "") -> dict[str, str]:
    """Flatten mapping ``properties`` to ``{"dotted.path": "type"}``."""
    out: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{parent}{name}"
        if "properties" in spec:
            out.update(field_paths(spec["properties"], f"{path}."))
        else:
            out[path] = str(spec.get("type", "object"))
    return out


def load_templates(deploy_dir: Path = DEPLOY_DIR, prefix: str = DEFAULT_PREFIX) -> Templates:
    """Read ``deploy/elasticsearch/{component,index}_templates/*.json``, renamed for ``prefix``."""

    def read(folder: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for path in sorted((deploy_dir / "elasticsearch" / folder).glob("*.json")):
            text = path.read_text(encoding="utf-8")
            name = path.stem
            if prefix != DEFAULT_PREFIX:
                text = text.replace(f'"{DEFAULT_PREFIX}-', f'"{prefix}-')
                name = name.replace(f"{DEFAULT_PREFIX}-", f"{prefix}-", 1)
            found[name] = json.loads(text)
        return found

    return Templates(read("component_templates"), read("index_templates"))


def setup(
    client: Elasticsearch, deploy_dir: Path = DEPLOY_DIR, prefix: str = DEFAULT_PREFIX
) -> list[str]:
    """Install (create or update) every component template, then every index template.

    Returns:
        The names installed, components first.
    """
    templates = load_templates(deploy_dir, prefix)
    done: list[str] = []
    for name, body in templates.components.items():
        client.cluster.put_component_template(name=name, body=body)
        done.append(name)
    for name, body in templates.indices.items():
        client.indices.put_index_template(name=name, body=body)
        done.append(name)
    return done
