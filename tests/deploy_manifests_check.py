#!/usr/bin/python3
"""Checks deploy/k8s against the binary it deploys: every `foley` command line in the manifests
uses only options that `foley SUBCOMMAND --help` lists, workers ask for one GPU each and are
probed on /health/ready, front ends too, and Redis keeps an fsynced append-only file.

  deploy_manifests_check.py FOLEY_BINARY DEPLOY_DIR
"""
import glob
import os
import subprocess
import sys

import yaml


def containers(doc):
    spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", [])


def main():
    foley, deploy = sys.argv[1], sys.argv[2]
    docs = []
    for path in sorted(glob.glob(os.path.join(deploy, "*.yaml"))):
        with open(path) as f:
            docs += [(os.path.basename(path), d) for d in yaml.safe_load_all(f)]
    failures = []
    seen = set()
    for name, doc in docs:
        for c in containers(doc):
            cmd = c.get("command", [])
            if cmd[:1] == ["foley"]:
                sub = cmd[1]
                seen.add(sub)
                help_text = subprocess.run([foley, sub, "--help"], capture_output=True, text=True).stdout
                for arg in cmd[2:]:
                    if arg.startswith("--") and arg not in help_text:
                        failures.append(f"{name}: foley {sub} has no option {arg}")
                probe = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
                if probe != "/health/ready":
                    failures.append(f"{name}: foley {sub} has no readiness probe on /health/ready")
                if sub == "worker":
                    gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
                    if gpus != 1:
                        failures.append(f"{name}: a worker must ask for exactly one GPU (got {gpus})")
            if cmd[:1] == ["redis-server"]:
                seen.add("redis")
                line = " ".join(cmd)
                for need in ("--appendonly yes", "--appendfsync always"):
                    if need not in line:
                        failures.append(f"{name}: redis-server without {need}")
    for need in ("serve", "worker", "redis"):
        if need not in seen:
            failures.append(f"no manifest runs {need}")
    for f in failures:
        print("FAIL", f)
    print(f"deploy manifests: {len(docs)} documents, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
