"""Keep deploy/k8s/deployment.yaml's federation-bridge/config-hash in step with the ConfigMap's
bridge.yaml (sha256, first 16 hex): a settings change then changes the pod template, and applying it
rolls the pods. rules.yaml is not hashed: rules reload in running pods.

    python scripts/k8s_config_hash.py          # rewrite the annotation
    python scripts/k8s_config_hash.py --check  # exit 1 when it is stale
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
ANNOTATION = "federation-bridge/config-hash"
_LINE = re.compile(rf'^(\s*{re.escape(ANNOTATION)}: )"([0-9a-f]*)"', re.M)


def config_hash(k8s: Path = K8S) -> str:
    doc = yaml.safe_load((k8s / "configmap.yaml").read_text(encoding="utf-8"))
    return hashlib.sha256(doc["data"]["bridge.yaml"].encode()).hexdigest()[:16]


def main(argv: list[str]) -> int:
    path = K8S / "deployment.yaml"
    text = path.read_text(encoding="utf-8")
    m = _LINE.search(text)
    if m is None:
        print(f"{path}: no {ANNOTATION} annotation", file=sys.stderr)
        return 1
    want = config_hash()
    if m[2] == want:
        print(f"{ANNOTATION}: {want} (up to date)")
        return 0
    if "--check" in argv:
        print(f"{path}: {ANNOTATION} is {m[2]}, the ConfigMap's bridge.yaml hashes to {want}: "
              "run `make k8s-config-hash`", file=sys.stderr)
        return 1
    path.write_text(_LINE.sub(rf'\g<1>"{want}"', text, count=1), encoding="utf-8")
    print(f"{ANNOTATION}: {m[2]} -> {want}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
