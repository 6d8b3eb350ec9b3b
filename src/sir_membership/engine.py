"""The dispatcher's side of Step Functions: start a request's execution, stop a superseded one.

Why a module of its own: the names and inputs are what make "one execution
per request" hold, so they are made in one place (``RequestKeys``) and sent
here; the state machine itself is statemachine/membership.asl.json.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .errors import EngineUnavailable
from .request_record import RequestKeys

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

logger = logging.getLogger(__name__)


def execution_input(keys: RequestKeys) -> str:
    """The execution's input: the request's keys only (no ResponseURL, no property value).

    Identical on every delivery of the attempt, so Step Functions treats a
    second start with the same name as the same execution.
    """
    return json.dumps(
        {"request": keys.to_input(), "work": {"step": 0, "next": "work", "seconds": 0}},
        sort_keys=True,
    )


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) or "ClientError"
    return type(error).__name__


@dataclass(frozen=True)
class Engine:
    """Step Functions, as the dispatcher uses it."""

    client: SFNClient
    state_machine_arn: str

    def execution_arn(self, keys: RequestKeys) -> str:
        """The ARN the execution of ``keys`` has (or would have)."""
        return (
            self.state_machine_arn.replace(":stateMachine:", ":execution:", 1)
            + ":"
            + keys.execution_name
        )

    def start(self, keys: RequestKeys) -> bool:
        """Start the request's execution; False when it already exists (a duplicate joins it)."""
        if not self.state_machine_arn:
            raise EngineUnavailable(
                "STATE_MACHINE_ARN is not set on the function: deploy the provider's template "
                "as published. Nothing was changed"
            )
        try:
            self.client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=keys.execution_name,
                input=execution_input(keys),
            )
        except ClientError as error:
            if _code(error) == "ExecutionAlreadyExists":
                logger.info("the request's execution already exists: it carries the request")
                return False
            raise self._failed(error) from None
        except BotoCoreError as error:
            raise self._failed(error) from None
        logger.info("execution started", extra={"execution": keys.execution_name})
        return True

    def _failed(self, error: Exception) -> EngineUnavailable:
        code = _code(error)
        fix = (
            "allow states:StartExecution on the provider's state machine in the function's role"
            if code in ("AccessDeniedException", "AccessDenied")
            else "check the provider's state machine exists, then retry"
        )
        return EngineUnavailable(
            f"Could not start the change's execution ({code}): {fix}. Nothing was changed"
        )

    def stop(self, keys: RequestKeys) -> None:
        """Stop the superseded request's execution, if it still runs (best effort).

        One that has just answered may still be running for a moment; one
        that ended cannot be stopped: neither is an error. The fence, not
        this stop, is what keeps its writes out.
        """
        try:
            self.client.stop_execution(
                executionArn=self.execution_arn(keys),
                error="Superseded",
                cause="a newer request of the same resource took over",
            )
        except (ClientError, BotoCoreError) as error:
            logger.info("could not stop the superseded execution", extra={"why": _code(error)})
            return
        logger.info("stopped the superseded execution", extra={"execution": keys.execution_name})
