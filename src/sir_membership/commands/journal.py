"""``journal``: read what the provider remembers of one resource (read-only).

Why: when a rollback restores less (or more) than someone expected, the
answer is in the resource's declaration record and latest journal entry,
items in the provider's DynamoDB table. This reads them with the caller's
credentials (``cloudformation:DescribeStacks`` unless a StackId is given,
``dynamodb:GetItem`` on the table) through the function's own
``JournalStore``, so the keys, the parsing and the rule that an expired
entry no longer counts are the function's. Rendering is
``preview.render_journal``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from ..errors import JournalUnavailable
from ..journal_store import JournalStore
from ..preview.render_journal import JournalReport
from .aws import Clients, CliError, one_line

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient


def is_stack_id(stack: str) -> bool:
    """Whether ``stack`` is a StackId (``arn:<partition>:cloudformation:...:stack/<name>/<id>``)."""
    return stack.startswith("arn:") and ":cloudformation:" in stack and ":stack/" in stack


def stack_id_of(client: CloudFormationClient, stack: str) -> str:
    """The StackId the function keyed its items with (DescribeStacks on a stack name)."""
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        info = error.response.get("Error", {})
        if info.get("Code") == "ValidationError" and "does not exist" in str(info.get("Message")):
            raise CliError(
                f"stack {stack} does not exist in {client.meta.region_name}: check --stack-name "
                "and --region; for a deleted stack pass its StackId (ARN)"
            ) from None
        raise
    if not stacks:
        raise CliError(f"stack {stack} does not exist in {client.meta.region_name}")
    return stacks[0]["StackId"]


def _unreadable(error: JournalUnavailable, table: str, region: str | None) -> CliError:
    """The table's read failure as the person running the command can act on it."""
    cause = error.__context__  # the store raises "from None"; the cause is kept here
    where = f"table {table}" + (f" in {region}" if region else "")
    if isinstance(cause, (NoCredentialsError, NoRegionError)):
        return CliError(one_line(cause))
    if isinstance(cause, ClientError):
        code = cause.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            return CliError(
                f"{where} does not exist: pass the provider stack's IdempotencyTableName "
                "output as --table-name, and its region as --region"
            )
        return CliError(
            f"cannot read {where}: {one_line(cause)}; the credentials running this command "
            "need dynamodb:GetItem on it"
        )
    if isinstance(cause, BotoCoreError):
        return CliError(f"cannot read {where}: {one_line(cause)}")
    return CliError(error.reason)


def run_journal(
    clients: Clients, *, stack_name: str, logical_id: str, table_name: str, region: str | None
) -> JournalReport:
    """Read the resource's record and latest entry; a ``CliError`` when neither exists."""
    stack_id = (
        stack_name
        if is_stack_id(stack_name)
        else stack_id_of(clients.cloudformation(region), stack_name)
    )
    store = JournalStore(clients.dynamodb(region), table_name)
    try:
        record = store.read_record(stack_id, logical_id)
        entry = store.read(stack_id, logical_id)
    except JournalUnavailable as error:
        raise _unreadable(error, table_name, region) from None
    if record is None and entry is None:
        raise CliError(
            f"nothing recorded for resource {logical_id} of stack {stack_id} in table "
            f"{table_name}: check --logical-id, and that the stack's ServiceToken is the "
            "function of the provider stack that owns this table"
        )
    return JournalReport(stack_id, logical_id, table_name, record, entry)
