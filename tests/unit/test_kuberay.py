"""deploy/rayservice.yaml against the RayService CRD of a pinned KubeRay release (its OpenAPI v3
schema, stored in deploy/schemas/, see the README there), checked as the API server would on
``kubectl apply`` (unknown fields rejected as with kubectl's default ``--validate=strict``), plus our
own rules: the head's probes, resources on every container, GPUs for the model workers, secrets
only by reference, a serveConfigV2 that parses; and deploy/podmonitor.yaml scraping those pods."""

from __future__ import annotations

import ast
import copy
import gzip
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator, FormatChecker, ValidationError, validators

ROOT = Path(__file__).parents[2]
KUBERAY_VERSION = "1.7.0"
SCHEMA = ROOT / f"deploy/schemas/rayservice-v1-kuberay-{KUBERAY_VERSION}.json.gz"
MANIFEST = ROOT / "deploy/rayservice.yaml"
PODMONITOR = ROOT / "deploy/podmonitor.yaml"
# What KubeRay puts on every pod it creates (labelPod in ray-operator/controllers/ray/common/pod.go).
KUBERAY_POD_LABELS = {"ray.io/is-ray-node": "yes"}
RAY_METRICS_PORT = 8080  # ray start's default --metrics-export-port; KubeRay's "metrics" port
GPU = "nvidia.com/gpu"

# --- Kubernetes' dialect of OpenAPI v3 on top of JSON Schema draft 4 ---------------------------

_base_properties = Draft4Validator.VALIDATORS["properties"]
_base_type = Draft4Validator.VALIDATORS["type"]
_EMBEDDED = ("apiVersion", "kind", "metadata")


def _properties(validator, properties, instance, schema) -> Iterator[ValidationError]:
    """Fields a structural schema does not name are pruned by the API server, an error with
    strict field validation; ``x-kubernetes-preserve-unknown-fields`` keeps them."""
    yield from _base_properties(validator, properties, instance, schema)
    if not validator.is_type(instance, "object") or "additionalProperties" in schema:
        return
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    known = set(properties) | (set(_EMBEDDED) if schema.get("x-kubernetes-embedded-resource") else set())
    for name in sorted(set(instance) - known):
        yield ValidationError(f"unknown field {name!r} (known: {', '.join(sorted(known))})")


def _type(validator, types, instance, schema) -> Iterator[ValidationError]:
    if instance is None and schema.get("nullable"):
        return
    yield from _base_type(validator, types, instance, schema)


def _int_or_string(validator, value, instance, schema) -> Iterator[ValidationError]:
    if value and not (validator.is_type(instance, "integer") or validator.is_type(instance, "string")):
        yield ValidationError(f"{instance!r} is neither an integer nor a string (int-or-string)")


def _list_type(validator, list_type, instance, schema) -> Iterator[ValidationError]:
    """``set``: items unique; ``map``: items unique by their x-kubernetes-list-map-keys (a key's
    default counts when an item leaves it out, as after the API server's defaulting)."""
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        seen = [json.dumps(item, sort_keys=True) for item in instance]
        if len(seen) != len(set(seen)):
            yield ValidationError(f"duplicate items in a list-type=set: {instance!r}")
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        item_props = schema.get("items", {}).get("properties", {})
        seen_keys: set[tuple] = set()
        for item in instance:
            if not isinstance(item, dict):
                continue
            key = tuple(item.get(k, item_props.get(k, {}).get("default")) for k in keys)
            if key in seen_keys:
                yield ValidationError(f"duplicate entry for list-map keys {keys}={key!r}")
            seen_keys.add(key)


_IN_LIST = re.compile(r"^self in (\[.*\])$")


def _cel(validator, rules, instance, schema) -> Iterator[ValidationError]:
    """Rules with ``oldSelf`` are transition rules (updates only: nothing to check on create);
    ``self in [...]`` is evaluated; any other CEL rule is an error here, so that a manifest never
    passes on a rule this test did not check."""
    for rule in rules:
        expression = rule["rule"].strip()
        if "oldSelf" in expression:
            continue
        match = _IN_LIST.match(expression)
        if match is None:
            yield ValidationError(f"CEL rule this test cannot evaluate: {expression!r}")
        elif instance not in ast.literal_eval(match.group(1)):
            yield ValidationError(rule.get("message", expression))


_formats = FormatChecker(formats=())


@_formats.checks("int32")
def _int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_formats.checks("int64")
def _int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


KubernetesValidator = validators.extend(
    Draft4Validator,
    {
        "properties": _properties,
        "type": _type,
        "x-kubernetes-int-or-string": _int_or_string,
        "x-kubernetes-list-type": _list_type,
        "x-kubernetes-validations": _cel,
    },
)


@cache
def crd_schema() -> dict:
    return json.loads(gzip.decompress(SCHEMA.read_bytes()))


def schema_errors(document: dict) -> list[str]:
    validator = KubernetesValidator(crd_schema(), format_checker=_formats)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


# --- the manifests -------------------------------------------------------------------------------


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def rayservices() -> list[dict]:
    found = [d for d in documents(MANIFEST) if d.get("kind") == "RayService"]
    assert found, f"{MANIFEST.name} has no RayService"
    return found


def service() -> dict:
    (only,) = rayservices()
    return only


def cluster(doc: dict) -> dict:
    return doc["spec"]["rayClusterConfig"]


def pod_templates(doc: dict) -> Iterator[tuple[str, dict]]:
    """(group name, pod template) of the head and of each worker group."""
    yield "head", cluster(doc)["headGroupSpec"]["template"]
    for group in cluster(doc).get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]


def containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def serve_config(doc: dict) -> dict:
    return yaml.safe_load(doc["spec"]["serveConfigV2"])


def head_container(doc: dict) -> dict:
    return cluster(doc)["headGroupSpec"]["template"]["spec"]["containers"][0]  # KubeRay: the first


def resolve_port(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"probe port {port!r} is not a named port of {container['name']}"
    return named[port]


# --- the CRD schema ------------------------------------------------------------------------------


def test_the_stored_schema_is_the_rayservice_v1_schema() -> None:
    schema = crd_schema()
    assert schema["type"] == "object"
    assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(schema["properties"])
    spec = schema["properties"]["spec"]["properties"]
    assert {"serveConfigV2", "rayClusterConfig"} <= set(spec)


@pytest.mark.parametrize("index", range(len(rayservices())))
def test_the_rayservice_passes_the_kuberay_crd_schema(index: int) -> None:
    doc = rayservices()[index]
    assert doc["apiVersion"] == "ray.io/v1"  # the version the stored schema is of
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    assert schema_errors(doc) == []


def _rename(d: dict, old: str, new: str) -> None:
    d[new] = d.pop(old)


def _set(path: str, value: Any):
    def change(doc: dict) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return change


HEAD = "spec.rayClusterConfig.headGroupSpec.template.spec.containers.0"
WORKER = "spec.rayClusterConfig.workerGroupSpecs.0"
BROKEN = {  # what is broken -> (how, a piece of the error it must cause)
    "a misspelled field under spec": (
        lambda d: _rename(d["spec"], "serviceUnhealthySecondThreshold", "serviceUnhealthySecondTreshold"),
        "unknown field 'serviceUnhealthySecondTreshold'",
    ),
    "a misspelled field in a container": (
        lambda d: _rename(head_container(d), "readinessProbe", "readynessProbe"),
        "unknown field 'readynessProbe'",
    ),
    "an unknown top-level field": (_set("status2", {}), "unknown field 'status2'"),
    "a string for an integer": (_set(f"{WORKER}.replicas", "1"), "replicas: '1' is not of type 'integer'"),
    "an integer for a string": (_set("spec.serveConfigV2", 1), "serveConfigV2: 1 is not of type 'string'"),
    "an int32 out of range": (
        _set(f"{WORKER}.maxReplicas", 2**31),
        "maxReplicas: 2147483648 is not a 'int32'",
    ),
    "a float for an int-or-string port": (
        _set(f"{HEAD}.readinessProbe.httpGet.port", 8000.5),
        "port: 8000.5 is neither an integer nor a string",
    ),
    "a boolean for an int-or-string port": (
        _set(f"{HEAD}.livenessProbe.httpGet.port", True),
        "port: True is neither an integer nor a string",
    ),
    "a malformed quantity": (
        _set(f"{HEAD}.resources.limits.memory", "8 GB"),
        "memory: '8 GB' does not match",
    ),
    "a container without a name": (lambda d: head_container(d).pop("name"), "'name' is a required property"),
    "a value outside an enum": (
        _set("spec.rayClusterConfig.autoscalerOptions", {"upscalingMode": "Fast"}),
        "upscalingMode: 'Fast' is not one of",
    ),
    "two ports with the same number": (
        lambda d: head_container(d)["ports"].append({"containerPort": 8000, "name": "serve2"}),
        "ports: duplicate entry for list-map keys ['containerPort', 'protocol']=(8000, 'TCP')",
    ),
    "managedBy not one of the CEL rule's values": (
        _set("spec.managedBy", "someone-else"),
        "managedBy: the managedBy field value must be either",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_a_broken_copy_fails_the_schema(breakage: str) -> None:
    doc = copy.deepcopy(service())
    change, expected = BROKEN[breakage]
    change(doc)
    errors = schema_errors(doc)
    assert any(expected in error for error in errors), f"{breakage}: {errors}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (f"{HEAD}.readinessProbe.httpGet.port", 8000),
        (f"{HEAD}.readinessProbe.httpGet.port", "serve"),
        (f"{HEAD}.resources.limits.cpu", 4),
        (f"{HEAD}.resources.limits.cpu", "3500m"),
        ("spec.managedBy", "ray.io/kuberay-operator"),
    ],
)
def test_int_or_string_fields_take_both_and_valid_variants_pass(field: str, value: object) -> None:
    doc = copy.deepcopy(service())
    _set(field, value)(doc)
    assert schema_errors(doc) == []


def test_the_kubernetes_extensions_are_honoured() -> None:
    """The stored schema has no preserve-unknown-fields, nullable or embedded resource today; the
    validator handles them as the API server does, for a KubeRay release that adds them."""
    schema = {
        "type": "object",
        "properties": {
            "free": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"strict": {"type": "object", "properties": {"a": {"type": "string"}}}},
            },
            "when": {"type": "string", "nullable": True},
            "pod": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {}},
            "n": {"x-kubernetes-int-or-string": True},
        },
    }

    def errors(instance: dict) -> list[str]:
        return [e.message for e in KubernetesValidator(schema).iter_errors(instance)]

    assert errors({"free": {"anything": [1, {"x": 2}]}, "when": None, "pod": {"kind": "Pod"}, "n": 3}) == []
    assert errors({"n": "50%"}) == []
    assert errors({"free": {"strict": {"b": 1}}}) == ["unknown field 'b' (known: a)"]
    assert errors({"pod": {"kind": "Pod", "spec": {}}}) == [
        "unknown field 'spec' (known: apiVersion, kind, metadata)"
    ]
    assert errors({"n": [3]}) == ["[3] is neither an integer nor a string (int-or-string)"]
    assert len(errors({"when": 3})) == 1


# --- our own rules -------------------------------------------------------------------------------


def test_the_heads_probes_hit_health_ready_and_livez_on_the_serve_port() -> None:
    doc = service()
    head = head_container(doc)
    port = serve_config(doc)["http_options"]["port"]
    assert resolve_port(head, "serve") == port  # the head's port named serve is Serve's HTTP port
    for probe, path in (
        ("startupProbe", "/health"),
        ("readinessProbe", "/ready"),
        ("livenessProbe", "/livez"),
    ):
        assert probe in head, f"the head has no {probe}"
        get = head[probe]["httpGet"]
        assert get["path"] == path, f"{probe} asks {get['path']}, not {path}"
        assert resolve_port(head, get["port"]) == port, f"{probe} is not on the serve port {port}"


def test_every_container_sets_requests_and_limits() -> None:
    for group, template in pod_templates(service()):
        for container in containers(template):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                    f"{group}/{container['name']} has no cpu and memory {kind}"
                )


def test_gpu_workers_request_a_gpu_and_tolerate_gpu_nodes() -> None:
    doc = service()
    apps = serve_config(doc)["applications"]
    wants_gpu = any(
        (section.get("deployment", {}).get("ray_actor_options") or {}).get("num_gpus", 0) > 0
        for app in apps
        for section in app.get("args", {}).values()
        if isinstance(section, dict)
    )
    assert wants_gpu, "serveConfigV2 puts no model on a GPU"
    gpu_groups = 0
    for group in cluster(doc)["workerGroupSpecs"]:
        if "gpu" not in group["groupName"]:
            continue
        gpu_groups += 1
        template = group["template"]
        (container,) = template["spec"]["containers"]
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert int(limits.get(GPU, 0)) >= 1, f"worker group {group['groupName']} has no {GPU} limit"
        # Kubernetes allows no overcommit of extended resources: a request must equal the limit.
        assert str(requests.get(GPU, limits[GPU])) == str(limits[GPU])
        tolerations = template["spec"].get("tolerations", [])
        assert any(t.get("key") == GPU for t in tolerations), f"{group['groupName']} does not tolerate {GPU}"
    assert gpu_groups, "no worker group named *gpu*"
    head = cluster(doc)["headGroupSpec"]["template"]["spec"]
    assert all(GPU not in c.get("resources", {}).get("limits", {}) for c in head["containers"])


# A name's words (split at "_"), so max_num_batched_tokens is not a token.
SECRET_NAME = re.compile(r"(^|_)(SECRET|PASSWORD|TOKEN|API_KEYS?|ACCESS_KEY|CREDENTIALS?)($|_)", re.I)


def test_secrets_come_from_secret_references_only() -> None:
    doc = service()
    for group, template in pod_templates(doc):
        for container in containers(template):
            where = f"{group}/{container['name']}"
            env = {e["name"]: e for e in container.get("env", [])}
            for name, entry in env.items():
                if SECRET_NAME.search(name):
                    assert "value" not in entry, f"{where}: {name} has a literal value"
                    assert "secretKeyRef" in entry.get("valueFrom", {}), f"{where}: {name} not from a secret"
            keys = env.get("SERVE_APP_AUTH__API_KEYS", {}).get("valueFrom", {}).get("secretKeyRef")
            assert keys and keys.get("name"), f"{where}: the API keys are not from a secretKeyRef"
            secret_refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
            s3_in_env = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
            assert secret_refs or s3_in_env, f"{where}: no S3 credentials from a secret"
    # Nor in serveConfigV2 (it is in the manifest too): no credential-looking key with a value.
    for key, value in _walk(serve_config(doc)):
        if SECRET_NAME.search(key.rsplit(".", 1)[-1]):
            assert not value, f"serveConfigV2 has a literal {key}"


def _walk(node: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{prefix}{k}", v
            yield from _walk(v, f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{prefix}{i}.")


def test_serve_config_v2_parses_as_a_serve_config() -> None:
    config = serve_config(service())
    assert isinstance(config, dict)
    assert config["applications"] and all("import_path" in app for app in config["applications"])


# --- the PodMonitor ------------------------------------------------------------------------------


def test_the_podmonitor_scrapes_ray_metrics_on_every_pod_of_the_rayservice() -> None:
    (monitor,) = documents(PODMONITOR)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    selector = monitor["spec"]["selector"]
    assert set(selector) == {"matchLabels"}, "only matchLabels is checked here"
    wanted = selector["matchLabels"]
    # Only this service's pods: at least one label that KubeRay does not put on every Ray pod.
    assert set(wanted.items()) - set(KUBERAY_POD_LABELS.items()), "the selector matches every Ray pod"
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    doc = service()
    for group, template in pod_templates(doc):
        labels = {**template.get("metadata", {}).get("labels", {}), **KUBERAY_POD_LABELS}
        assert wanted.items() <= labels.items(), f"the PodMonitor does not select the {group} pods"
        rayparams = (
            cluster(doc)["headGroupSpec"]
            if group == "head"
            else next(g for g in cluster(doc)["workerGroupSpecs"] if g["groupName"] == group)
        )["rayStartParams"]
        metrics_port = int(rayparams.get("metrics-export-port", RAY_METRICS_PORT))
        ray_container = template["spec"]["containers"][0]
        ports = {p.get("name"): p["containerPort"] for p in ray_container.get("ports", [])}
        for endpoint in endpoints:
            assert endpoint.get("path", "/metrics") == "/metrics"
            port = endpoint["port"]
            assert ports.get(port) == metrics_port, (
                f"{group}: the PodMonitor scrapes port {port!r}, the pod's Ray metrics are on {metrics_port}"
            )
