"""Process helpers, the template-driven DynamoDB table on moto, and the local bundle."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sirlocal.emulator import EmulatorControl
from sirlocal.receiver import ReceiverControl
from sirlocal.services import (
    DEFAULT_TEMPLATE,
    MotoServer,
    ServiceProcess,
    create_table,
    dynamodb_client,
    free_port,
    load_template,
    local_services,
    python_env,
    start_moto,
    table_definition,
)

from sir_membership import guard

FIXTURE_TEMPLATE = textwrap.dedent(
    """\
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Level: {Type: String, Default: INFO}
    Resources:
      Table:
        Type: AWS::DynamoDB::Table
        Properties:
          TableName: !Sub "${AWS::StackName}-table"
          BillingMode: PAY_PER_REQUEST
          AttributeDefinitions:
            - {AttributeName: id, AttributeType: S}
          KeySchema:
            - {AttributeName: id, KeyType: HASH}
          TimeToLiveSpecification: {AttributeName: expiration, Enabled: true}
          PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}
      Role:
        Type: AWS::IAM::Role
        Properties:
          Policies:
            - PolicyDocument:
                Statement:
                  - Resource: !GetAtt Table.Arn
                  - Resource: [!GetAtt [Table, StreamArn], !Ref Level]
          Level: !FindInMap [Levels, !Ref Level, Name]
          Flag: !If [IsProd, !Ref "AWS::NoValue", {"Fn::Base64": x}]
    """
)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(FIXTURE_TEMPLATE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with start_moto() as server:
        yield server


def test_short_form_tags_become_intrinsics(template: Path) -> None:
    role = load_template(template)["Resources"]["Role"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert statements[0]["Resource"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert statements[1]["Resource"] == [{"Fn::GetAtt": ["Table", "StreamArn"]}, {"Ref": "Level"}]
    assert role["Level"] == {"Fn::FindInMap": ["Levels", {"Ref": "Level"}, "Name"]}
    assert role["Flag"] == {"Fn::If": ["IsProd", {"Ref": "AWS::NoValue"}, {"Fn::Base64": "x"}]}


def test_table_definition_from_a_template(template: Path) -> None:
    definition = table_definition(template)
    assert definition.logical_id == "Table"
    assert definition.key_schema == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert definition.billing_mode == "PAY_PER_REQUEST"
    assert definition.ttl_attribute == "expiration"
    assert definition.point_in_time_recovery
    assert definition.table_name is None  # !Sub: not a literal name
    assert definition.create_table_kwargs("t")["TableName"] == "t"


@pytest.mark.skipif(not DEFAULT_TEMPLATE.exists(), reason="template.yaml not written yet")
def test_the_project_template_declares_the_idempotency_table() -> None:
    definition = table_definition(DEFAULT_TEMPLATE)
    assert definition.attribute_definitions == [{"AttributeName": "id", "AttributeType": "S"}]
    assert definition.key_schema == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert definition.billing_mode == "PAY_PER_REQUEST"
    assert definition.ttl_attribute == "expiration"


def test_exactly_one_table_is_required(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("Resources: {Topic: {Type: AWS::SNS::Topic}}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="found none"):
        table_definition(path)
    with pytest.raises(ValueError, match="found none"):
        table_definition(DEFAULT_TEMPLATE if DEFAULT_TEMPLATE.exists() else path, logical_id="Nope")


def test_table_on_moto_behaves_as_declared(moto: MotoServer, template: Path) -> None:
    client = dynamodb_client(moto.url)
    table = create_table(client, table_definition(template), "fixture-table")
    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = client.describe_time_to_live(TableName="fixture-table")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}
    backups = client.describe_continuous_backups(TableName="fixture-table")[
        "ContinuousBackupsDescription"
    ]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    client.put_item(TableName="fixture-table", Item={"id": {"S": "k"}, "expiration": {"N": "1"}})
    with pytest.raises(client.exceptions.ClientError):  # the key schema is enforced
        client.put_item(TableName="fixture-table", Item={"other": {"S": "k"}})
    moto.reset()
    assert client.list_tables()["TableNames"] == []


def test_moto_is_stopped_even_when_the_body_fails() -> None:
    started: list[MotoServer] = []

    def failing_test_body() -> None:
        with start_moto() as server:
            started.append(server)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_test_body()
    (server,) = started
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(server.process.pid, 0)


def test_process_group_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    script = (
        "import json,subprocess,sys,time;"
        f"p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
        f"open({str(marker)!r},'w').write(str(p.pid));"
        "print(json.dumps({'ok': True}), flush=True); time.sleep(60)"
    )
    with ServiceProcess([sys.executable, "-c", script], name="parent") as process:
        assert process.info == {"ok": True}
        grandchild = int(marker.read_text())
    assert process.poll() is not None
    assert not alive(grandchild)


def test_a_child_that_never_gets_ready_is_cleaned_up() -> None:
    silent = ServiceProcess(
        [sys.executable, "-c", "import time; time.sleep(60)"], name="silent", timeout=0.5
    )
    with pytest.raises(TimeoutError):
        silent.start()
    assert silent.poll() is not None
    crashing = ServiceProcess(
        [sys.executable, "-c", "import sys; sys.exit('bad config')"], name="crash"
    )
    with pytest.raises(RuntimeError, match="bad config"):
        crashing.start()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535


HANDLER_LIKE = textwrap.dedent(
    """\
    import json, os, sys, urllib.request
    import boto3
    ir = boto3.client("security-ir")
    membership = ir.get_membership(membershipId=sys.argv[1])
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=os.environ["IDEMPOTENCY_TABLE_NAME"], Item={"id": {"S": "req-1"}})
    body = json.dumps({"Status": "SUCCESS", "PhysicalResourceId": membership["membershipId"]}).encode()
    request = urllib.request.Request(sys.argv[2], data=body, method="PUT")
    print(urllib.request.urlopen(request, timeout=5).status)
    """
)


def test_local_services_env_is_all_a_handler_process_needs() -> None:
    template = DEFAULT_TEMPLATE if DEFAULT_TEMPLATE.exists() else None
    if template is None:
        pytest.skip("template.yaml not written yet")
    with local_services(template, seed=[{"membershipId": "m-abcdef123456"}]) as services:
        env = services.env()
        assert env["AWS_ENDPOINT_URL_SECURITY_IR"] == services.security_ir_url
        assert env["AWS_ENDPOINT_URL_DYNAMODB"] == services.dynamodb_url
        assert env["AWS_ENDPOINT_URL_SFN"] == services.states.endpoint_url
        assert env["STATE_MACHINE_ARN"] == services.states.state_machine_arn
        inherited = {"AWS_ENDPOINT_URL_SFN": "https://states.example.invalid"}
        assert services.child_env(inherited)["AWS_ENDPOINT_URL_SFN"] == (
            services.states.endpoint_url
        )
        assert env["SSL_CERT_FILE"] == services.receiver.ca_path
        assert (env["AWS_REGION"], env["AWS_DEFAULT_REGION"]) == ("us-east-1", "us-east-1")
        assert env["IDEMPOTENCY_TABLE_NAME"] == services.table["TableName"]
        url = services.receiver.url_for("handler-like")
        # The function answers the receiver only because the stand-ins allow its origin.
        assert guard.Policy.from_environ(env).admits(url)
        assert not guard.Policy.from_environ({"AWS_REGION": "us-east-1"}).admits(url)
        base: dict[str, Any] = {**os.environ, "AWS_PROFILE": "must-not-be-used"}
        done = subprocess.run(  # noqa: PLW1510 - the assertion checks the outcome
            [sys.executable, "-c", HANDLER_LIKE, "m-abcdef123456", url],
            env=services.child_env(base),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout.strip() == "200", done.stderr
        assert [c.operation for c in services.emulator.calls()] == ["GetMembership"]
        item = dynamodb_client(services.dynamodb_url).get_item(
            TableName=services.table_name, Key={"id": {"S": "req-1"}}
        )
        assert "Item" in item
        assert (
            services.receiver.wait_for("handler-like", timeout=1).body["PhysicalResourceId"]
            == "m-abcdef123456"
        )
        moto_process = services.moto.process
    assert moto_process.poll() is not None
    assert not os.path.exists(env["SSL_CERT_FILE"])


@pytest.mark.skipif(not DEFAULT_TEMPLATE.exists(), reason="template.yaml not written yet")
def test_bundle_runs_as_a_process() -> None:
    argv = [sys.executable, "-m", "sirlocal", "--table-name", "bundle-table"]
    with ServiceProcess(argv, name="bundle", env=python_env()) as bundle:
        info = bundle.info
        assert info["env"]["IDEMPOTENCY_TABLE_NAME"] == "bundle-table"
        assert EmulatorControl(info["emulator"]).health()
        receiver = ReceiverControl(info["receiver"], info["ca"])
        assert receiver.url_for("x").startswith(info["receiver"] + "/x?")
        tables = dynamodb_client(info["dynamodb"]).list_tables()["TableNames"]
        assert tables == ["bundle-table"]
        moto_port = int(info["dynamodb"].rsplit(":", 1)[1])
    assert bundle.poll() is not None
    with socket.socket() as probe:  # moto went down with the bundle
        assert probe.connect_ex(("127.0.0.1", moto_port)) != 0
