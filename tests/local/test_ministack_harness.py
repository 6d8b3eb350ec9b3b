"""The ministack harness's pure parts: the deploy-time substitution, the change-set
contexts it adds to ministack's answer, its process environment, and the demo's
predicted-versus-made comparison. (tests/e2e/test_ministack.py runs the whole.)"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET

from sirlocal.ministack import LocalSettings, ministack_env
from sirlocal.ministack_contexts import (
    answer_record,
    context,
    strip_no_value,
    token_hash,
    with_contexts,
)
from sirlocal.ministack_demo import prediction_problems
from sirlocal.ministack_deploy import substitute_unsupported
from sirlocal.ministack_engine import (
    ENGINE_ENV,
    answer_problems,
    consumer_template,
    execution_name,
    requests_of,
)
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


def test_engine_settings_are_added_to_ministacks_environment_without_aws_ones() -> None:
    settings = LocalSettings("http://127.0.0.1:9999", 4567)
    env = ministack_env(
        {"PATH": "/bin"},
        settings,
        extra={**ENGINE_ENV, "AWS_PROFILE": "prod", "RESPONSE_URL_PATTERNS": "https://evil"},
    )
    assert env["SFN_WAIT_SCALE"] == "1"
    assert env["SIR_TIMING_LONGEST_SLEEP"] == ENGINE_ENV["SIR_TIMING_LONGEST_SLEEP"]
    assert "AWS_PROFILE" not in env
    # The function's local settings are the harness's, whatever ``extra`` says.
    assert env["RESPONSE_URL_PATTERNS"] == "http://localhost:4567"


def test_execution_names_follow_the_spec() -> None:
    name = execution_name("arn:stack/s/1", "Membership", "r-1")
    assert name == hashlib.sha256(b"arn:stack/s/1\nMembership\nr-1").hexdigest()
    assert execution_name("arn:stack/s/1", "Membership", "r-1", 2) == f"{name}-2"
    assert len(execution_name("s" * 300, "L" * 255, "r" * 100, 9999)) <= 80


def _log(*records: dict[str, object]) -> list[dict[str, object]]:
    return list(records)


def test_requests_are_joined_with_their_answers_and_settlement() -> None:
    answer = answer_record(
        "tok-1",
        True,
        {"Status": "FAILED", "RequestId": "r-1", "StackId": "s", "Reason": "why", "Data": {"x": 1},
         "PhysicalResourceId": "m-1"},
        12.0,
    )  # fmt: skip
    assert answer["token"] == token_hash("tok-1") != "tok-1"
    assert "Data" not in answer
    assert "tok-1" not in json.dumps(answer)
    records = _log(
        {"kind": "request", "t": 10.0, "token": token_hash("tok-1"), "requestType": "Update",
         "logicalId": "Membership", "stackId": "s", "serviceTimeout": "40"},
        {"kind": "request", "t": 11.0, "token": token_hash("tok-2"), "requestType": "Update",
         "logicalId": "Membership", "stackId": "s", "serviceTimeout": "3600"},
        answer,
        {"kind": "settled", "t": 12.5, "token": token_hash("tok-1"), "settled": "failed"},
        answer_record("tok-1", False, {"Status": "SUCCESS", "RequestId": "r-1"}, 13.0),
    )  # fmt: skip
    first, second = requests_of(records)
    assert (first.request_type, first.service_timeout, first.request_id) == ("Update", "40", "r-1")
    assert [(a.status, a.known) for a in first.answers] == [("FAILED", True), ("SUCCESS", False)]
    assert [a.physical_id for a in first.answers] == ["m-1", ""]
    assert (first.settled, first.settled_at) == ("failed", 12.5)
    assert first.execution_name == execution_name("s", "Membership", "r-1")
    assert (second.answers, second.settled) == ((), "")
    problems = answer_problems([first, second], [("Update", "FAILED"), ("Update", "SUCCESS")])
    assert problems == [
        "requests and first answers [('Update', 'FAILED'), ('Update', '')], expected "
        "[('Update', 'FAILED'), ('Update', 'SUCCESS')]",
        "Update answered 2 times: ['FAILED', 'SUCCESS']",
        "Update answered after CloudFormation stopped waiting",
        "Update answered 0 times: []",
    ]


def test_the_engine_suites_consumer_removes_its_ous_on_delete_with_its_service_timeout() -> None:
    text = consumer_template(service_timeout=40)
    assert "DeletionPolicy: Delete" in text
    assert "OnDelete: RemoveOrganizationalUnits" in text
    assert "ServiceTimeout: 40\n" in text
    assert "ServiceTimeout: 3600" not in text
    assert "DeletionPolicy: RetainExceptOnCreate" in consumer_template(remove_ous_on_delete=False)
