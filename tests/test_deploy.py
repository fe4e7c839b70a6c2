"""The deployment files of docs/deploy.md, checked as far as this machine allows (offline).

Neither The Littlest JupyterHub nor Helm can be installed here (helm is not packaged for Debian
12, nor published on PyPI or npm; TLJH is installed from its git repository), so the YAML files
are checked against JSON schemas written here from the keys TLJH (`tljh-config`, "Configuring
TLJH") and Zero to JupyterHub (chart 4.x configuration reference) document, restricted to the
sections we use: a misspelt or misplaced key, or a wrong type, fails. Then the files are checked
against each other and against the measured sizes the documentation quotes.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from traitlets.config import Config

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"

SIZE = {"type": ["string", "number"], "pattern": r"^[0-9.]+[KMGT]?$"}
STRINGS = {"type": "array", "items": {"type": "string"}}


def closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    """An object with only these documented keys."""
    return {"type": "object", "properties": properties, "additionalProperties": False, "required": list(required)}


# The Littlest JupyterHub's config.yaml ("Configuring TLJH with tljh-config").
TLJH_SCHEMA = closed({
    "base_url": {"type": "string"},
    "auth": {"type": "object", "properties": {"type": {"type": "string"}},
             "patternProperties": {"^[A-Z]": {"type": "object"}}, "additionalProperties": False},
    "users": closed({"admin": STRINGS, "allowed": STRINGS, "banned": STRINGS, "extra_user_groups": {"type": "object"}}),
    "limits": closed({"memory": SIZE, "cpu": {"type": "number", "exclusiveMinimum": 0}}),
    "http": closed({"address": {"type": "string"}, "port": {"type": "integer"}}),
    "https": closed({"enabled": {"type": "boolean"}, "address": {"type": "string"}, "port": {"type": "integer"},
                     "tls": closed({"key": {"type": "string"}, "cert": {"type": "string"}}),
                     "letsencrypt": closed({"email": {"type": "string"}, "domains": STRINGS, "staging": {"type": "boolean"}})}),
    "user_environment": closed({"default_app": {"enum": ["jupyterlab", "classic"]}}),
    "services": closed({"cull": closed({
        "enabled": {"type": "boolean"}, "timeout": {"type": "integer"}, "every": {"type": "integer"},
        "concurrency": {"type": "integer"}, "users": {"type": "boolean"}, "max_age": {"type": "integer"},
        "remove_named_servers": {"type": "boolean"}})}),
})

# Zero to JupyterHub's values.yaml (chart 4.x configuration reference), the sections we use.
EXTRA_FILE = {"type": "object", "required": ["mountPath"], "additionalProperties": False,
              "oneOf": [{"required": ["data"]}, {"required": ["stringData"]}, {"required": ["binaryData"]}],
              "properties": {"mountPath": {"type": "string", "pattern": "^/"}, "data": {"type": "object"},
                             "stringData": {"type": "string"}, "binaryData": {"type": "string"},
                             "mode": {"type": "number"}}}
Z2JH_SCHEMA = {
    "type": "object",
    "properties": {
        "hub": {"type": "object", "properties": {
            "config": {"type": "object", "patternProperties": {"^[A-Z]": {"type": "object"}}, "additionalProperties": False},
            "extraConfig": {"type": "object", "additionalProperties": {"type": "string"}},
        }},
        "singleuser": {"type": "object", "properties": {
            "image": closed({"name": {"type": "string"}, "tag": {"type": "string"},
                             "pullPolicy": {"type": ["string", "null"]}, "pullSecrets": {"type": "array"}}, ("name", "tag")),
            "memory": closed({"limit": SIZE, "guarantee": SIZE}),
            "cpu": closed({"limit": {"type": "number"}, "guarantee": {"type": "number"}}),
            "defaultUrl": {"type": "string"},
            "storage": {"type": "object", "properties": {"capacity": {"type": "string", "pattern": r"^[0-9]+[KMGT]i$"}}},
            "extraEnv": {"type": "object", "additionalProperties": {"type": "string"}},
            "extraFiles": {"type": "object", "additionalProperties": EXTRA_FILE},
        }},
        "cull": closed({"enabled": {"type": "boolean"}, "users": {"type": "boolean"}, "adminUsers": {"type": "boolean"},
                        "removeNamedServers": {"type": "boolean"}, "timeout": {"type": "integer"},
                        "every": {"type": "integer"}, "concurrency": {"type": "integer"}, "maxAge": {"type": "integer"}}),
        "scheduling": {"type": "object", "properties": {
            "userScheduler": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
            "podPriority": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
            "userPlaceholder": {"type": "object", "properties": {"enabled": {"type": "boolean"},
                                                                  "replicas": {"type": "integer"}}},
        }},
    },
    # the chart's top-level keys (values.yaml of chart 4.x)
    "propertyNames": {"enum": ["fullnameOverride", "nameOverride", "enabled", "custom", "imagePullSecret",
                               "imagePullSecrets", "hub", "rbac", "proxy", "singleuser", "scheduling", "prePuller",
                               "ingress", "httpRoute", "cull", "debug", "global"]},
}
SINGLEUSER_KEYS = {  # documented keys of singleuser (chart 4.x)
    "podNameTemplate", "extraTolerations", "nodeSelector", "extraNodeAffinity", "extraPodAffinity",
    "extraPodAntiAffinity", "networkTools", "cloudMetadata", "networkPolicy", "events", "extraAnnotations",
    "extraLabels", "extraFiles", "extraEnv", "lifecycleHooks", "initContainers", "extraContainers",
    "allowPrivilegeEscalation", "uid", "fsGid", "serviceAccountName", "storage", "image", "startTimeout", "cpu",
    "memory", "extraResource", "cmd", "defaultUrl", "extraPodConfig", "profileList"}


def load(path: Path):
    return yaml.safe_load(path.read_text())


def gigabytes(size: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([KMGT]?)", str(size)).groups()
    return float(number) * {"": 1e-9, "K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3}[unit]


def test_schemas_reject_what_they_should():
    """The schemas can fail: a misspelt key, a misplaced one, a wrong type."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"limits": {"memroy": "2G"}}, TLJH_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"limits": {"cpu": "one"}}, TLJH_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"singleuser": {"cpu": {"limit": "1"}}}, Z2JH_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"singleUser": {}}, Z2JH_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"singleuser": {"extraFiles": {"x": {"data": {}}}}}, Z2JH_SCHEMA)


def test_tljh_config_matches_the_schema_and_the_sizes():
    config = load(DEPLOY / "tljh" / "config.yaml")
    jsonschema.validate(config, TLJH_SCHEMA)
    # a training kernel peaks at 1.3 GB (README, Memory): the per-user limit must hold it, as on Binder
    assert 1.5 <= gigabytes(config["limits"]["memory"]) <= 2.0 and config["limits"]["cpu"] == 1
    assert config["user_environment"]["default_app"] == "jupyterlab"


def test_tljh_setup_applies_config_yaml():
    """setup.sh's `tljh-config set` lines are exactly config.yaml's leaves (besides users.admin)."""
    script = (DEPLOY / "tljh" / "setup.sh").read_text()
    subprocess.run(["bash", "-n", str(DEPLOY / "tljh" / "setup.sh")], check=True)
    assert script.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in script
    applied = dict(re.findall(r"^tljh-config set (\S+) (\S+)$", script, re.M))

    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            elif not isinstance(value, list):
                yield f"{prefix}{key}", value

    expected = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in leaves(load(DEPLOY / "tljh" / "config.yaml"))}
    assert applied == expected
    assert "chmod 0777 \"$EXCHANGE\"" in script and "EXCHANGE=/srv/nbgrader/exchange" in script


def test_tljh_hub_config_sets_what_the_user_servers_need():
    c = Config()
    code = (DEPLOY / "tljh" / "jupyterhub_config.d" / "tp3.py").read_text()
    exec(compile(code, "tp3.py", "exec"), {"get_config": lambda: c})  # noqa: S102 (our own config file)
    env = c.Spawner.environment
    assert env["JUPYTER_CONFIG_PATH"] == "/srv/tp3/jupyter" and env["TP3_CACHE_DIR"] == "/srv/tp3/cache"
    assert env["HF_HUB_OFFLINE"] == "1" and env["OMP_NUM_THREADS"] == "1"
    script = (DEPLOY / "tljh" / "setup.sh").read_text()
    assert 'SRV=/srv/tp3' in script and 'cp -r "$REPO/deploy/jupyter" "$SRV/jupyter"' in script


def test_z2jh_values_match_the_schema_binder_limits_and_deploy_jupyter():
    values = load(DEPLOY / "z2jh" / "values.yaml")
    jsonschema.validate(values, Z2JH_SCHEMA)
    single = values["singleuser"]
    assert set(single) <= SINGLEUSER_KEYS
    assert gigabytes(single["memory"]["limit"]) == 2.0 and single["cpu"]["limit"] == 1  # Binder's 2 GB / 1 CPU
    assert 1.3 <= gigabytes(single["memory"]["guarantee"]) <= 2.0  # above the 1.3 GB training peak
    assert single["extraEnv"]["OMP_NUM_THREADS"] == str(single["cpu"]["limit"])
    # the mounted Jupyter settings are deploy/jupyter's files, where JUPYTER_CONFIG_PATH points
    root = single["extraEnv"]["JUPYTER_CONFIG_PATH"]
    mounted = {f["mountPath"]: f for f in single["extraFiles"].values()}
    for rel in ("jupyter_server_config.d/tp3-hub.json", "labconfig/page_config.json"):
        assert mounted[f"{root}/{rel}"]["data"] == json.loads((DEPLOY / "jupyter" / rel).read_text())
    nbgrader = mounted[f"{root}/nbgrader_config.py"]["stringData"]
    compile(nbgrader, "nbgrader_config.py", "exec")
    assert "configureExchange(c, " in nbgrader
    for code in values["hub"]["extraConfig"].values():
        compile(code, "extraConfig", "exec")


def test_z2jh_image_moves_the_caches_out_of_the_home_volume():
    dockerfile = (DEPLOY / "z2jh" / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions[:2] == ["ARG", "FROM"] and instructions[-2:] == ["USER", "ENV"]
    assert re.search(r"ENV TP3_CACHE_DIR=/opt/tp3-cache", dockerfile)
    assert "--target-repo-dir" in dockerfile  # the lab's editable install must not live in the home either
    postbuild = (REPO / "postBuild").read_text()
    assert "python -m lab_utils prefetch" in postbuild  # what fills ~/.cache/tp3 in repo2docker's image


def test_jupyter_settings_for_hub_users():
    """deploy/jupyter turns the Assignments tab back on over the students' settings (which turn
    it off for Binder, where there is no exchange); deploy/instructor turns the instructor's tools on."""
    import sys

    sys.path.insert(0, str(REPO))
    from lab_utils.jupyter_setup import INSTRUCTOR_LAB_PLUGINS, INSTRUCTOR_SERVER_EXTENSIONS

    hub = json.loads((DEPLOY / "jupyter" / "jupyter_server_config.d" / "tp3-hub.json").read_text())
    assert hub == {"ServerApp": {"jpserver_extensions": {"nbgrader.server_extensions.assignment_list": True}}}
    lab = json.loads((DEPLOY / "jupyter" / "labconfig" / "page_config.json").read_text())
    assert lab == {"disabledExtensions": {"@jupyter/nbgrader:assignment-list": False}}
    instructor = json.loads((DEPLOY / "instructor" / "jupyter_server_config.d" / "tp3-instructor.json").read_text())
    assert instructor["ServerApp"]["jpserver_extensions"] == {name: True for name in INSTRUCTOR_SERVER_EXTENSIONS}
    instructor_lab = json.loads((DEPLOY / "instructor" / "labconfig" / "page_config.json").read_text())
    assert instructor_lab["disabledExtensions"] == {name: False for name in INSTRUCTOR_LAB_PLUGINS}
    config = Config()
    code = (DEPLOY / "jupyter" / "nbgrader_config.py").read_text()
    exec(compile(code, "nbgrader_config.py", "exec"), {"get_config": lambda: config})  # noqa: S102
    assert config.Exchange.root == "/srv/nbgrader/exchange"


def test_deploy_doc_names_every_shipped_file():
    doc = (REPO / "docs" / "deploy.md").read_text()
    shipped = sorted(str(p.relative_to(REPO)) for p in DEPLOY.rglob("*") if p.is_file())
    assert shipped and [p for p in shipped if p not in doc] == []
    assert "nbgrader/issues/1870" in doc
