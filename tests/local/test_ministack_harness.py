"""The ministack harness's pure parts: the deploy-time substitution, the change-set
contexts it adds to ministack's answer, its process environment, and the demo's
predicted-versus-made comparison. (tests/e2e/test_ministack.py runs the whole.)"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from sirlocal.ministack import LocalSettings, ministack_env
from sirlocal.ministack_contexts import context, strip_no_value, with_contexts
from sirlocal.ministack_demo import prediction_problems
from sirlocal.ministack_deploy import substitute_unsupported
from sirlocal.services import load_template

NO_VALUE = object()


def test_only_the_role_policies_are_substituted_with_the_same_policy_on_the_same_role() -> None:
    template = load_template()
    deployed, done = substitute_unsupported(template)
    # The table key's policies, one per role that reads or writes the table.
    substituted = ["AnswerTableKeyPolicy", "TableKeyPolicy", "WorkTableKeyPolicy"]
    assert [(s.logical_id, s.declared, s.deployed) for s in done] == [
        (name, "AWS::IAM::RolePolicy", "AWS::IAM::Policy") for name in substituted
    ]
    for name in substituted:
        before = template["Resources"][name]
        after = deployed["Resources"][name]
        assert after["Properties"] == {
            "PolicyName": before["Properties"]["PolicyName"],
            "PolicyDocument": before["Properties"]["PolicyDocument"],
            "Roles": [before["Properties"]["RoleName"]],
        }
        assert after["Condition"] == before["Condition"] == "HasKmsKey"
        assert before["Type"] == "AWS::IAM::RolePolicy"
    others = set(template["Resources"]) - set(substituted)
    assert {k: deployed["Resources"][k] for k in others} == {
        k: template["Resources"][k] for k in others
    }


def test_contexts_drop_no_value_and_normalise_custom_resources_only() -> None:
    resolved = {
        "Resources": {
            "M": {
                "Type": "Custom::X",
                "Properties": {"A": 600, "B": NO_VALUE, "C": [True, NO_VALUE]},
            },
            "L": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 90}},
        }
    }

    def normalise(value: object) -> object:  # marks where ministack's own normaliser runs
        return {"normalised": value}

    assert strip_no_value(resolved["Resources"]["M"]["Properties"], NO_VALUE) == {
        "A": 600,
        "C": [True],
    }
    assert json.loads(context(resolved, "M", NO_VALUE, normalise) or "") == {
        "Properties": {"normalised": {"A": 600, "C": [True]}}
    }
    assert json.loads(context(resolved, "L", NO_VALUE, normalise) or "") == {
        "Properties": {"RetentionInDays": 90}
    }
    assert context(resolved, "Gone", NO_VALUE, normalise) is None


def test_each_resource_change_gets_its_own_contexts_escaped() -> None:
    xml = (
        "<R><Changes>"
        "<member><ResourceChange><LogicalResourceId>A</LogicalResourceId></ResourceChange></member>"
        "<member><ResourceChange><LogicalResourceId>B</LogicalResourceId></ResourceChange></member>"
        "</Changes></R>"
    )
    out = with_contexts(xml, [(None, '{"x":"<&>"}'), ('{"b":1}', '{"b":2}')])
    changes = ET.fromstring(out).findall("./Changes/member/ResourceChange")
    assert [(c.findtext("LogicalResourceId"), c.findtext("BeforeContext"),
             c.findtext("AfterContext")) for c in changes] == [
        ("A", None, '{"x":"<&>"}'),
        ("B", '{"b":1}', '{"b":2}'),
    ]  # fmt: skip
    assert with_contexts(xml, [(None, "{}")]) == xml  # not the expected shape: untouched


def test_local_settings_reach_the_lambda_processes_and_no_outside_aws_setting_does() -> None:
    settings = LocalSettings("http://127.0.0.1:9999", 4567)
    env = ministack_env(
        {"PATH": "/bin", "AWS_PROFILE": "prod", "AWS_ENDPOINT_URL_S3": "https://x"}, settings
    )
    assert env["AWS_ENDPOINT_URL_SECURITY_IR"] == "http://127.0.0.1:9999"
    assert env["RESPONSE_URL_PATTERNS"] == "http://localhost:4567"
    assert env["GATEWAY_PORT"] == "4567"
    assert env["BIND_HOST"] == "127.0.0.1"
    assert env["AUTH"] == "true"
    assert env["PATH"] == "/bin"
    assert "AWS_PROFILE" not in env
    assert "AWS_ENDPOINT_URL_S3" not in env
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_CONFIG_FILE"]) == ("test", "/dev/null")


def test_prediction_compares_every_call_or_the_forward_ones_up_to_a_refusal() -> None:
    one, two, back = {"membershipId": "m-1", "n": 1}, {"membershipId": "m-1", "n": 2}, {"n": 0}
    assert prediction_problems([one, two], [one, two], refused=False) == []
    assert prediction_problems([one, two], [one, two, back], refused=True) == []
    assert prediction_problems([one, two], [one, two, back], refused=False) == [
        "3 UpdateMembership call(s) made, 2 predicted; call(s) [3] differ from the plan"
    ]
    assert prediction_problems([one, two], [two, one], refused=False) == [
        "2 UpdateMembership call(s) made, 2 predicted; call(s) [1, 2] differ from the plan"
    ]
    assert prediction_problems([one], [], refused=True) == [
        "0 UpdateMembership call(s) made, 1 predicted; call(s) [1] differ from the plan"
    ]
