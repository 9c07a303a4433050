"""Write the OCSF mapping's tables into docs/ocsf.md (every action and subject type the spec
lists, and those the simulator's catalogue adds): `.venv/bin/python scripts/ocsf_mapping_doc.py`.
tests/unit/test_ocsf_mapping.py fails when the document and the tables differ."""

from __future__ import annotations

from pathlib import Path

from tfy_audit._ocsf.doc import mapping_markdown, replace_section
from tfy_audit.simulator.actions import ACTIONS, FUTURE_ACTIONS, FUTURE_SUBJECT_TYPE
from tfy_audit.simulator.spec_enums import SPEC_ACTIONS, SPEC_SUBJECT_TYPES

DOC = Path(__file__).resolve().parents[1] / "docs" / "ocsf.md"


def documented_actions() -> list[str]:
    return sorted({*SPEC_ACTIONS, *(a[0] for a in ACTIONS), *(a[0] for a in FUTURE_ACTIONS)})


def documented_subject_types() -> list[str]:
    return sorted({*SPEC_SUBJECT_TYPES, FUTURE_SUBJECT_TYPE})


def main() -> None:
    section = mapping_markdown(documented_actions(), documented_subject_types())
    DOC.write_text(replace_section(DOC.read_text(encoding="utf-8"), section), encoding="utf-8")
    print(f"wrote the mapping into {DOC}")


if __name__ == "__main__":
    main()
