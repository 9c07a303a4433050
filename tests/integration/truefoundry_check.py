"""Run by the interpreter of a virtualenv holding TrueFoundry's SDK (not tfy-audit's): checks
examples/truefoundry/ against the SDK's own models and prints the Job as the SDK sees it.

Usage: python truefoundry_check.py EXAMPLES_DIR. Prints one JSON object: `job`, the Job as the
SDK normalises it. Exits non-zero, with the reason, when:
- truefoundry.yaml does not parse as a TrueFoundry application, or holds a key the SDK
  ignores (pydantic drops unknown keys silently, so the file must equal its own round trip);
- deploy.py's Job, built with the values the YAML carries, differs from the YAML's;
- `deploy.py --print` does not print that same Job.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from truefoundry.deploy import Application, Job


def normalised(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(model.json(exclude_none=True))
    return data


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(1)


def main() -> None:
    examples = Path(sys.argv[1])
    spec = yaml.safe_load((examples / "truefoundry.yaml").read_text(encoding="utf-8"))
    app = Application.parse_obj(spec)
    from_yaml = normalised(app.__root__)
    if from_yaml.get("type") != "job":
        fail(f"truefoundry.yaml is a {from_yaml.get('type')!r}, not a job")
    if from_yaml != spec:
        fail(f"truefoundry.yaml differs from its own round trip through the SDK: {from_yaml}")
    Job.parse_obj(spec)  # the SDK's deployable Job accepts it too

    loader = importlib.util.spec_from_file_location("tfy_audit_deploy", examples / "deploy.py")
    assert loader is not None and loader.loader is not None
    deploy = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(deploy)
    job = deploy.build_job(**deploy.PLACEHOLDERS)
    if not isinstance(job, Job):
        fail(f"deploy.build_job returned {type(job).__name__}, not truefoundry.deploy.Job")
    from_script = normalised(job)
    if from_script != from_yaml:
        fail(f"deploy.py and truefoundry.yaml differ:\n{from_script}\n{from_yaml}")

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        deploy.main(["--print"])
    printed = out.getvalue()
    if normalised(Application.parse_obj(yaml.safe_load(printed)).__root__) != from_yaml:
        fail(f"deploy.py --print prints another Job:\n{printed}")
    print(json.dumps({"job": from_yaml}))


if __name__ == "__main__":
    main()
