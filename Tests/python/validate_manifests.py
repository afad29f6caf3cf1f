"""Validates Kubernetes manifests offline; exits non-zero, naming each object and error, when one fails.

Usage: python3 validate_manifests.py MANIFESTS.yaml CRD_DIRECTORY KUBERNETES_VERSION

Core kinds (Deployment, Service, ...) go to kubernetes-validate, strict (unknown fields are errors), at
KUBERNETES_VERSION. Custom resources are checked against the openAPIV3Schema of their CRD in
CRD_DIRECTORY for their apiVersion, with unknown fields refused as the API server prunes them (CEL
rules and defaults are not evaluated). A kind that is neither fails.
"""
import copy
import pathlib
import subprocess
import sys
import tempfile

import jsonschema
import yaml

manifests, crd_directory, version = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
documents = [document for document in yaml.safe_load_all(open(manifests)) if document]

schemas = {}
for path in crd_directory.glob("*.yaml"):
    crd = yaml.safe_load(open(path))
    for served in crd["spec"]["versions"]:
        key = (crd["spec"]["group"] + "/" + served["name"], crd["spec"]["names"]["kind"])
        schemas[key] = served["schema"]["openAPIV3Schema"]


def closed(schema):
    """The schema with additionalProperties false wherever properties are listed and nothing else is allowed."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for value in node.values():
            if isinstance(value, dict):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(value)
    return schema


failures = []
core = []
for document in documents:
    kind, api = document.get("kind"), document.get("apiVersion")
    name = f"{kind}/{document.get('metadata', {}).get('name')}"
    if (api, kind) in schemas:
        body = {key: value for key, value in document.items() if key not in ("apiVersion", "kind", "metadata")}
        schema = closed(schemas[(api, kind)])
        schema.get("properties", {}).pop("metadata", None)
        schema.get("properties", {}).pop("apiVersion", None)
        schema.get("properties", {}).pop("kind", None)
        for error in jsonschema.Draft202012Validator(schema).iter_errors(body):
            failures.append(f"{name} ({api}): {'.'.join(str(part) for part in error.absolute_path) or '(root)'}: {error.message}")
    elif "." in api.split("/")[0] and not api.startswith(("apps/", "rbac.authorization.k8s.io/", "batch/", "policy/", "networking.k8s.io/")):
        failures.append(f"{name}: no CRD for {api} {kind} in {crd_directory}")
    else:
        core.append(document)

if core:
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "core.yaml"
        path.write_text(yaml.safe_dump_all(core))
        result = subprocess.run(["kubernetes-validate", "--strict", "-k", version, str(path)], capture_output=True, text=True)
    if result.returncode != 0 or "ERROR" in result.stdout + result.stderr:
        failures.append(f"kubernetes-validate {version}:\n{result.stdout}{result.stderr}")

for failure in failures:
    print(failure)
print(f"{len(documents)} objects: {len(core)} core kinds (kubernetes-validate {version}), {len(documents) - len(core)} custom resources (CRD schemas); {len(failures)} failures")
sys.exit(1 if failures else 0)
