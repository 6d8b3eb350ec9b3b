"""template.yaml with and without the permissions boundary, the KMS key and the alarm topic.

Each of the four settings (the alarm topic set with both of the others) is rendered into a copy of the template, as
``sam deploy --parameter-overrides`` would pass it (the values as the
parameters' defaults), and run through cfn-lint, ``sam validate --lint`` and
checkov, which must all pass. A second copy resolves the conditions the way
CloudFormation will (``Fn::If`` picked, ``AWS::NoValue`` dropped,
conditional resources left out), so cfn-lint sees the concrete template and
checkov's verdict on it is known: without the key it finds exactly the two
documented trade-offs (an AWS owned key for the table, CloudWatch Logs' own
for the log group), with it none.

The tools live in ``.venv-tools`` and ``.venv-scan`` (``make setup``); where
they are not installed the test is skipped, never passed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from itertools import product
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import iam_tables  # noqa: E402

CFN_LINT = ROOT / ".venv-tools" / "bin" / "cfn-lint"
SAM = ROOT / ".venv-tools" / "bin" / "sam"
CHECKOV = ROOT / ".venv-scan" / "bin" / "checkov"
BOUNDARY = "arn:aws:iam::123456789012:policy/org/security-boundary"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TOPIC = "arn:aws:sns:us-east-1:123456789012:security-alerts"
SETTINGS = [
    {
        "PermissionsBoundaryArn": boundary,
        "KmsKeyArn": key,
        "AlarmTopicArn": TOPIC if boundary and key else "",
    }
    for boundary, key in product(("", BOUNDARY), ("", KEY))
]
#: The functions, each with the same four documented suppressions.
FUNCTIONS = ("MembershipFunction", "WorkFunction", "AnswerFunction")
#: The table key's policy of each role that reads or writes the table.
KEY_POLICIES = ("TableKeyPolicy", "WorkTableKeyPolicy", "AnswerTableKeyPolicy")
#: What checkov finds when the conditions are resolved without a key (docs/security.md).
WITHOUT_KEY = {"CKV_AWS_119", "CKV_AWS_158"}


def _name(setting: dict[str, str]) -> str:
    on = [k for k, v in setting.items() if v]
    return "with-" + "-and-".join(on) if on else "with-neither"


def with_values(text: str, values: dict[str, str]) -> str:
    """The template with each parameter's default set to the value a deploy would pass."""
    for name, value in values.items():
        text, count = re.subn(
            rf"(\n  {name}:\n    Type: String\n)(    Default: .*\n)?",
            lambda m, v=value: f'{m[1]}    Default: "{v}"\n',
            text,
            count=1,
        )
        assert count == 1, name
    return text


def _resolve(value: Any, conditions: dict[str, bool]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, yes, no = value["Fn::If"]
            return _resolve(yes if conditions[name] else no, conditions)
        out = {}
        for key, item in value.items():
            resolved = _resolve(item, conditions)
            if resolved != {"Ref": "AWS::NoValue"}:
                out[key] = resolved
        return out
    if isinstance(value, list):
        items = [_resolve(v, conditions) for v in value]
        return [v for v in items if v != {"Ref": "AWS::NoValue"}]
    return value


def inline_suppressions(text: str) -> dict[str, list[dict[str, str]]]:
    """The template's ``# checkov:skip=ID:reason`` comments, by the resource they sit in."""
    found: dict[str, list[dict[str, str]]] = {}
    resource = ""
    for line in text.split("\n"):
        top = re.fullmatch(r"  ([A-Za-z0-9]+):", line)
        if top:
            resource = top[1]
        skip = re.search(r"#\s*checkov:skip=([A-Z0-9_]+):(.*)", line)
        if skip:
            found.setdefault(resource, []).append({"id": skip[1], "comment": skip[2].strip()})
    return found


def resolved(values: dict[str, str]) -> dict[str, Any]:
    """The template as CloudFormation will see it with these values: conditions evaluated.

    JSON has no comments, so the inline suppressions move to each resource's
    ``Metadata: checkov: skip`` (checkov's form for JSON templates).
    """
    template = iam_tables.load_template()
    skips = inline_suppressions((ROOT / "template.yaml").read_text(encoding="utf-8"))
    for name, skipped in skips.items():
        metadata = template["Resources"][name].setdefault("Metadata", {})
        metadata["checkov"] = {"skip": skipped}
    expected = {
        "HasPermissionsBoundary": bool(values["PermissionsBoundaryArn"]),
        "HasKmsKey": bool(values["KmsKeyArn"]),
        "HasAlarmTopic": bool(values.get("AlarmTopicArn")),
    }
    assert set(template["Conditions"]) == set(expected)
    for name, value in values.items():
        template["Parameters"][name]["Default"] = value
    template["Parameters"]["AllowedStackNames"]["Default"] = "security-ir-*"
    template.pop("Conditions")
    template["Resources"] = {
        name: {k: v for k, v in resource.items() if k != "Condition"}
        for name, resource in template["Resources"].items()
        if expected.get(resource.get("Condition", ""), True)
    }
    return _resolve(template, expected)


def _tool(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not installed (make setup)")
    return path


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env)


def _failed_checks(output: str) -> set[str]:
    return set(re.findall(r"Check: (CKV_[A-Z0-9_]+):", output))


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Per setting: the template with the values, and the resolved template (JSON)."""
    where = tmp_path_factory.mktemp("matrix")
    text = with_values(
        (ROOT / "template.yaml").read_text(encoding="utf-8"), {"AllowedStackNames": "security-ir-*"}
    )
    out = {}
    for setting in SETTINGS:
        name = _name(setting)
        rendered = where / f"{name}.yaml"
        rendered.write_text(with_values(text, setting), encoding="utf-8")
        concrete = where / f"{name}.resolved.json"
        concrete.write_text(json.dumps(resolved(setting), indent=1), encoding="utf-8")
        out[name] = (rendered, concrete)
    return out


def test_the_rendering_sets_what_it_says() -> None:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    every = {"PermissionsBoundaryArn": BOUNDARY, "KmsKeyArn": KEY, "AlarmTopicArn": TOPIC}
    rendered = with_values(text, every)
    for value in every.values():
        assert f'Default: "{value}"' in rendered
    concrete = resolved(every)
    resources = concrete["Resources"]
    for role in ("FunctionRole", "WorkFunctionRole", "AnswerFunctionRole", "StateMachineRole"):
        assert resources[role]["Properties"]["PermissionsBoundary"] == {
            "Ref": "PermissionsBoundaryArn"
        }
    assert resources["IdempotencyTable"]["Properties"]["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Ref": "KmsKeyArn"},
    }
    assert set(KEY_POLICIES) <= set(resources)
    for alarm in ("SafetyNetAnswersAlarm", "UnrestoredAnswersAlarm"):
        assert resources[alarm]["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopicArn"}]
    neither = resolved({"PermissionsBoundaryArn": "", "KmsKeyArn": ""})["Resources"]
    assert "PermissionsBoundary" not in neither["FunctionRole"]["Properties"]
    for group in ("FunctionLogGroup", "WorkFunctionLogGroup", "AnswerFunctionLogGroup"):
        assert "KmsKeyId" not in neither[group]["Properties"]
    assert neither["IdempotencyTable"]["Properties"]["SSESpecification"] == {"SSEEnabled": False}
    assert not set(KEY_POLICIES) & set(neither)
    for alarm in ("SafetyNetAnswersAlarm", "UnrestoredAnswersAlarm"):
        assert "AlarmActions" not in neither[alarm]["Properties"]  # the alarm stays
    for function in FUNCTIONS:
        skipped = neither[function]["Metadata"]["checkov"]["skip"]
        assert {s["id"] for s in skipped} == {
            "CKV_AWS_115",
            "CKV_AWS_116",
            "CKV_AWS_117",
            "CKV_AWS_173",
        }, function


def test_linters_and_scanner_pass_with_and_without_boundary_and_key(
    copies: dict[str, tuple[Path, Path]],
) -> None:
    paths = [str(p) for pair in copies.values() for p in pair]
    lint = _run([str(_tool(CFN_LINT)), *paths])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for rendered, _ in copies.values():
        validate = _run([str(_tool(SAM)), "validate", "--lint", "--template-file", str(rendered)])
        assert validate.returncode == 0, f"{rendered.name}: {validate.stdout}{validate.stderr}"
    rendered_files = [f"--file={rendered}" for rendered, _ in copies.values()]
    scan = _run(
        [
            str(_tool(CHECKOV)),
            "--quiet",
            "--compact",
            "--framework",
            "cloudformation",
            "--skip-download",
            *rendered_files,
        ]
    )
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert _failed_checks(scan.stdout) == set()


def _failed_by_file(output: str) -> dict[str, set[str]]:
    """checkov's failed checks, by the name of the file each was found in."""
    found: dict[str, set[str]] = {}
    for check, where in re.findall(r"Check: (CKV_[A-Z0-9_]+):.*?File: (\S+?):\d", output, re.S):
        found.setdefault(Path(where).name, set()).add(check)
    return found


def test_resolved_without_the_key_only_the_documented_findings_remain(
    copies: dict[str, tuple[Path, Path]],
) -> None:
    scan = _run(
        [
            str(_tool(CHECKOV)),
            "--quiet",
            "--compact",
            "--framework",
            "cloudformation",
            "--skip-download",
            *[f"--file={concrete}" for _, concrete in copies.values()],
        ]
    )
    found = _failed_by_file(scan.stdout)
    for setting in SETTINGS:
        _, concrete = copies[_name(setting)]
        expected = set() if setting["KmsKeyArn"] else WITHOUT_KEY
        assert found.get(concrete.name, set()) == expected, (concrete.name, scan.stdout)
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert all(check in security for check in WITHOUT_KEY)
