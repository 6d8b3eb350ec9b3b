"""AWS clients and reads shared by the commands, with one-line errors.

The security-ir client is configured as the Lambda function's is, so reads
time out and retry as the function's do (a test keeps them equal).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from ..errors import PermissionDenied
from ..membership import MembershipState
from ..service import MembershipService

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_security_ir import SecurityIncidentResponseClient

#: Seconds the reads may take, retries included (MembershipService's deadline).
READ_BUDGET_SECONDS = 120.0
#: The Lambda function's security-ir client configuration (app.SECURITY_IR).
FUNCTION_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"total_max_attempts": 1, "mode": "standard"},
    user_agent_extra="sir-membership",
)
CLOUDFORMATION_CONFIG = Config(
    retries={"total_max_attempts": 5, "mode": "standard"}, user_agent_extra="sir-membership-cli"
)


class CliError(Exception):
    """A one-line reason to stop (exit 1)."""


def dynamodb_client(region: str | None) -> DynamoDBClient:
    """A DynamoDB client with a few retries (``journal``'s GetItem only)."""
    return boto3.client("dynamodb", region_name=region, config=CLOUDFORMATION_CONFIG)


@dataclass(frozen=True)
class Clients:
    """Where the AWS clients come from (a region or None), so tests hand in stubbed ones.

    ``lambda_`` reads the provider function's configuration (its
    AllowedStackNames); None means it is not read, and ``plan`` says so.
    """

    cloudformation: Callable[[str | None], CloudFormationClient]
    security_ir: Callable[[str | None], SecurityIncidentResponseClient]
    lambda_: Callable[[str | None], LambdaClient] | None = None
    dynamodb: Callable[[str | None], DynamoDBClient] = dynamodb_client


def cloudformation_client(region: str | None) -> CloudFormationClient:
    """A CloudFormation client with a few retries (reads only)."""
    return boto3.client("cloudformation", region_name=region, config=CLOUDFORMATION_CONFIG)


def security_ir_client(region: str | None) -> SecurityIncidentResponseClient:
    """A security-ir client configured as the function's."""
    return boto3.client("security-ir", region_name=region, config=FUNCTION_CONFIG)


def lambda_client(region: str | None) -> LambdaClient:
    """A Lambda client with a few retries (GetFunctionConfiguration only)."""
    return boto3.client("lambda", region_name=region, config=CLOUDFORMATION_CONFIG)


def default_clients() -> Clients:
    """Real boto3 clients: the default credential chain (AWS_PROFILE, environment, SSO...)."""
    return Clients(cloudformation_client, security_ir_client, lambda_client, dynamodb_client)


def read_allowed_stack_names(clients: Clients, function_arn: str) -> tuple[str | None, str]:
    """The provider function's ALLOWED_STACK_NAMES, and where it came from (or why not).

    Read with GetFunctionConfiguration as the person previewing, who may not
    be allowed to: then None and the reason, and the preview says the check
    was not made. Only that one variable is kept.
    """
    if clients.lambda_ is None:
        return None, "the provider function's configuration was not read"
    region = function_arn.split(":")[3]
    try:
        config = clients.lambda_(region).get_function_configuration(FunctionName=function_arn)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        return None, (
            f"lambda:GetFunctionConfiguration on the provider function failed ({code}); "
            "allow it to the credentials running this preview"
        )
    except BotoCoreError as error:
        return None, f"lambda:GetFunctionConfiguration failed ({type(error).__name__})"
    variables = (config.get("Environment") or {}).get("Variables") or {}
    value = variables.get("ALLOWED_STACK_NAMES")
    if value is None:
        return "*", "the function has no ALLOWED_STACK_NAMES: it serves every stack"
    return value, "read from the function's configuration"


def one_line(error: Exception) -> str:
    """What went wrong and what to do, without a traceback."""
    if isinstance(error, NoCredentialsError):
        return "no AWS credentials found: set AWS_PROFILE or credentials in the environment"
    if isinstance(error, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"{error.operation_name} failed: {info.get('Code', '?')}: {info.get('Message', '')}"
    if isinstance(error, BotoCoreError):
        return f"AWS call failed: {error}"
    return str(error)


def read_json(path: str, what: str) -> Any:
    """A JSON file, or a ``CliError`` naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise CliError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise CliError(f"{what} {path} is not JSON: {error}") from None


def deadline(seconds: float) -> Callable[[], float]:
    """Seconds left of a budget that starts now."""
    end = time.monotonic() + seconds
    return lambda: end - time.monotonic()


def membership_service(clients: Clients, region: str, account_id: str) -> MembershipService:
    """The function's own reader, with the CLI's read budget."""
    return MembershipService(
        clients.security_ir(region),
        deadline(READ_BUDGET_SECONDS),
        account_id=account_id,
        region=region,
    )


def get_membership(service: MembershipService, membership_id: str) -> MembershipState:
    """GetMembership as the person previewing: a denial is theirs, not the function's role's."""
    try:
        return service.get(membership_id)
    except PermissionDenied:
        raise PermissionDenied(
            f"Access denied for security-ir:GetMembership on membership {membership_id} to the "
            "credentials running this preview: allow it, or preview offline with "
            "--change-set-file and --state-file"
        ) from None


def list_tags(service: MembershipService, membership_id: str, arn: str) -> dict[str, str]:
    """ListTagsForResource as the person previewing (only for resources that declare Tags)."""
    try:
        return service.list_tags(membership_id, arn)
    except PermissionDenied:
        raise PermissionDenied(
            f"Access denied for security-ir:ListTagsForResource on membership {membership_id} "
            "to the credentials running this preview: allow it, or preview offline with "
            "--change-set-file"
        ) from None


def stack_missing(error: ClientError, client: CloudFormationClient, stack: str | None) -> None:
    """CloudFormation's "Stack [x] does not exist" (a ValidationError), naming the region."""
    info = error.response.get("Error", {})
    if info.get("Code") == "ValidationError" and "does not exist" in str(info.get("Message")):
        what = f"stack {stack}" if stack else "the change set's stack"
        raise CliError(
            f"{what} does not exist in {client.meta.region_name}: check "
            "--stack-name and --region (the stack's region, where its change sets live)"
        ) from None
