#!/usr/bin/env python3
"""Validates every Argo Rollouts object the repository renders against the
openAPIV3Schema of the pinned release's CRDs (deploycheck/crds/argo-rollouts),
with unknown fields rejected.

The API server prunes unknown fields silently (a misspelt `failureLimt` is
dropped, not refused); here an object schema that lists its properties and
does not preserve unknown fields gets `additionalProperties: false`, so a
misspelt or misplaced field fails.

Usage: validate-argo-objects.py FILE_OR_KUSTOMIZATION_DIR...
       validate-argo-objects.py --self-test
"""
import copy
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "deploycheck" / "crds" / "argo-rollouts"


def strict(schema):
    """The CRD schema as JSON Schema that rejects unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = node.get("anyOf") or [{"type": "integer"}, {"type": "string"}]
        preserve = node.get("x-kubernetes-preserve-unknown-fields")
        if node.get("type") == "object" and "properties" in node and not preserve:
            node.setdefault("additionalProperties", False)
        for key, value in list(node.items()):
            if key in ("properties", "patternProperties", "definitions"):
                for child in value.values():
                    walk(child)
            elif key in ("items", "additionalProperties", "not"):
                walk(value)
            elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
                for child in value:
                    walk(child)

    walk(schema)
    return schema


def load_schemas():
    schemas = {}
    for path in sorted(CRDS.glob("*-crd.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            api_version = f"{group}/{version['name']}"
            schemas[(api_version, kind)] = strict(version["schema"]["openAPIV3Schema"])
    if not schemas:
        sys.exit(f"no CRDs in {CRDS}")
    return schemas


def objects_of(target):
    path = Path(target)
    if path.is_dir():
        out = subprocess.run(["kubectl", "kustomize", str(path)], check=True,
                             capture_output=True, text=True).stdout
    else:
        out = path.read_text()
    return [d for d in yaml.safe_load_all(out) if d]


def errors_of(obj, schemas):
    key = (obj.get("apiVersion"), obj.get("kind"))
    validator = jsonschema.Draft7Validator(schemas[key])
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))]


def validate(targets):
    schemas = load_schemas()
    failed = 0
    for target in targets:
        checked = 0
        for obj in objects_of(target):
            if not str(obj.get("apiVersion", "")).startswith("argoproj.io/"):
                continue
            where = f"{target}: {obj['kind']}/{obj['metadata']['name']}"
            if (obj["apiVersion"], obj["kind"]) not in schemas:
                print(f"FAIL {where}: no vendored CRD for {obj['apiVersion']} {obj['kind']}")
                failed += 1
                continue
            problems = errors_of(obj, schemas)
            checked += 1
            if problems:
                failed += 1
                print(f"FAIL {where}")
                for problem in problems:
                    print(f"     {problem}")
            else:
                print(f"ok   {where}")
        if checked == 0:
            print(f"FAIL {target}: no Argo Rollouts object found")
            failed += 1
    return failed


def self_test():
    """The validation can fail: a misspelt field and a wrong type are refused."""
    schemas = load_schemas()
    template = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {"metrics": [{"name": "m", "failureLimt": 0,
                              "provider": {"prometheus": {"query": "up"}}}]},
    }
    assert any("failureLimt" in p for p in errors_of(template, schemas)), "unknown field accepted"
    template["spec"]["metrics"][0].pop("failureLimt")
    assert errors_of(template, schemas) == [], errors_of(template, schemas)
    template["spec"]["metrics"][0]["count"] = "5"  # int-or-string: accepted
    assert errors_of(template, schemas) == []
    template["spec"]["metrics"][0]["provider"]["prometheus"]["timeout"] = "10"  # integer only
    assert errors_of(template, schemas), "a string timeout accepted"
    print("ok   self-test: unknown fields and wrong types are refused")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        sys.exit(0)
    if not sys.argv[1:]:
        sys.exit(__doc__)
    sys.exit(1 if validate(sys.argv[1:]) else 0)
