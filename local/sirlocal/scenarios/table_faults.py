"""The table's second section: faults of the service, the ResponseURL and Lambda.

Throttles, conflicts while accounts propagate (the ``propagation`` group: the
emulator's propagation models over several Work steps), 5xx, resets, hangs,
killed sandboxes and failing response PUTs. In the order
:data:`~sirlocal.scenarios.table.SCENARIOS` plays them.
"""

from __future__ import annotations

from typing import Any

from sirlocal.fixtures import FOREIGN, A, Expect, declare, ous, seed
from sirlocal.scenarios.checks import (
    late_write_settles,
    put_forbidden,
    put_retried,
    put_unanswered_then_ok,
)
from sirlocal.scenarios.custom import duplicate_joins_execution
from sirlocal.scenarios.model import Fault, Scenario, Step
from sirlocal.scenarios.shared import BASE_OUS, N0, N1, steps


def _propagation(name: str, title: str, fault: Fault, **options: Any) -> Scenario:
    """+20 OUs (4 UpdateMembership calls) on A while ``fault``'s propagation model is armed."""
    extra = tuple(options.pop("extra_faults", ()))
    min_work_steps = int(options.pop("min_work_steps", 0))
    return Scenario(
        name,
        "propagation",
        title,
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 22)),
                options.pop("expect", "UPDATE_COMPLETE"),
                faults=(fault, *extra),
                answer_status="SUCCESS",
                min_work_steps=min_work_steps,
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 22), FOREIGN[0]}))},
        applied_writes=4,
        **options,
    )


FAULTS: tuple[Scenario, ...] = (
    # -- faults ---------------------------------------------------------------------------
    Scenario(
        "throttle-storm",
        "faults",
        "5 throttles in a row on UpdateMembership (60 s function timeout)",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 3)),
                "UPDATE_COMPLETE",
                faults=(Fault("error", "UpdateMembership", times=5, error="ThrottlingException"),),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}))},
        # The backoff after the 5th throttle (3.2-6.4 s, jittered) is slept in the step
        # when under 5 s; else a Wait state carries it and the next Work step reads first.
        calls_one_of=(
            ("Get A", "Get A", *["Update A +1 -0 !ThrottlingException"] * 5, "Update A +1 -0"),
            (
                "Get A",
                "Get A",
                *["Update A +1 -0 !ThrottlingException"] * 5,
                "Get A",
                "Update A +1 -0",
            ),
        ),
        timeout=60.0,
    ),
    Scenario(
        "throttle-get",
        "faults",
        "2 throttles on GetMembership during Create",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1),
                "CREATE_COMPLETE",
                faults=(Fault("error", "GetMembership", times=2, error="ThrottlingException"),),
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        (
            "Get A !ThrottlingException",
            "Get A !ThrottlingException",
            "Get A",
            "Update A +0 -0 name",
        ),
    ),
    Scenario(
        "propagation-conflicts",
        "faults",
        "ConflictException x2 after each OU change while accounts propagate",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 14)),
                "UPDATE_COMPLETE",
                faults=(Fault("propagation", times=2),),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 14), FOREIGN[0]}))},
        # Pacing: after a refusal, the wait for the window is a Wait state (no Lambda
        # running), so each next Work step reads the membership before its call.
        (
            "Get A",
            "Get A",
            "Update A +5 -0",
            "Update A +5 -0 !ConflictException",
            "Get A",
            "Update A +5 -0 !ConflictException",
            "Get A",
            "Update A +5 -0",
            "Get A",
            "Update A +2 -0 !ConflictException",
            "Get A",
            "Update A +2 -0 !ConflictException",
            "Get A",
            "Update A +2 -0",
        ),
    ),
    _propagation(
        "propagation-conflict-20",
        "+20 OUs while each OU change is refused (Conflict) for P = 1 s",
        Fault("model", model="conflict", seconds=1.0),
    ),
    _propagation(
        "propagation-conflict-retry-after-20",
        "+20 OUs while each OU change is refused for P = 1 s, with Retry-After",
        Fault("model", model="conflict", seconds=1.0, retry_after=True),
    ),
    _propagation(
        "propagation-stale-reads-20",
        "+20 OUs while each OU change is refused for P = 1 s and reads show it only after P",
        Fault("model", model="conflict-stale-reads", seconds=1.0),
    ),
    _propagation(
        "propagation-several-work-steps",
        "+20 OUs when calls x P (4 x 2.5 s) is carried by several Work steps and Wait states "
        "(22 s function timeout)",
        Fault("model", model="conflict", seconds=2.5),
        timeout=22.0,
        min_work_steps=2,
    ),
    _propagation(
        "propagation-several-work-steps-retry-after",
        "+20 OUs, calls x P (4 x 2.5 s) over several Work steps (22 s), the service sends "
        "Retry-After",
        Fault("model", model="conflict", seconds=2.5, retry_after=True),
        timeout=22.0,
        min_work_steps=2,
        reliability_only=(
            "8 s of propagation waits: several Work steps are played by "
            "propagation-several-work-steps, Retry-After by propagation-conflict-retry-after-20"
        ),
    ),
    _propagation(
        "propagation-several-work-steps-stale-reads",
        "+20 OUs, calls x P (4 x 2.5 s) over several Work steps (22 s), reads show a change "
        "after P",
        Fault("model", model="conflict-stale-reads", seconds=2.5),
        timeout=22.0,
        min_work_steps=2,
        reliability_only=(
            "9 s of propagation waits: several Work steps are played by "
            "propagation-several-work-steps, stale reads by propagation-stale-reads-20"
        ),
    ),
    _propagation(
        "work-step-killed-mid-call",
        "+20 OUs over several Work steps; the first step's sandbox is killed 1 s in "
        "(Lambda.ServiceException): the state machine's Retry runs the step again",
        Fault("model", model="conflict", seconds=2.5),
        timeout=22.0,
        extra_faults=(Fault("invoke_kill", seconds=1.0),),
        min_work_steps=2,
    ),
    Scenario(
        "several-work-steps-past-service-timeout",
        "propagation",
        "+40 OUs at P = 4 s (8 calls) with ServiceTimeout 60 s: FAILED in time, the rollback "
        "(its own ServiceTimeout 300 s) takes several Work steps too and restores",
        (seed(),),
        steps(
            Step("create", declare(ServiceTimeout="300"), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 42), ServiceTimeout="60"),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(Fault("model", model="conflict", seconds=4.0),),
                reason_starts=(
                    "The change could not finish within the resource's ServiceTimeout of 60 s"
                ),
                reason_ends="the stack's rollback restores them from the change journal",
                answer_within=60.0,
            ),
        ),
        {A: Expect(ous=BASE_OUS)},
        timeout=22.0,
        reliability_only=(
            "40 s: plays a 60 s ServiceTimeout to its end; FAILED in time at the ServiceTimeout "
            "is played by api-hangs-past-service-timeout, the restore by the rollback scenarios"
        ),
    ),
    Scenario(
        "duplicate-delivery-joins-execution",
        "propagation",
        "+20 OUs over several Work steps; CloudFormation delivers the Update again meanwhile: "
        "its start joins the running execution, no second write, one answer",
        (seed(),),
        steps(Step("create", declare(), "CREATE_COMPLETE")),
        {A: Expect(ous=frozenset({*ous(1, 22), FOREIGN[0]}))},
        custom=duplicate_joins_execution,
        custom_faults="propagation model conflict, P = 2.5 s; the Update delivered twice",
        timeout=22.0,
    ),
    Scenario(
        "5xx-then-replan",
        "faults",
        "InternalServerException on the 2nd and 3rd UpdateMembership: re-read, re-plan",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 14)),
                "UPDATE_COMPLETE",
                faults=(
                    Fault(
                        "error",
                        "UpdateMembership",
                        on_call=2,
                        times=2,
                        error="InternalServerException",
                    ),
                ),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 14), FOREIGN[0]}))},
        (
            "Get A",
            "Get A",
            "Update A +5 -0",
            "Update A +5 -0 !InternalServerException",
            "Get A",
            "Update A +5 -0 !InternalServerException",
            "Get A",
            "Update A +5 -0",
            "Update A +2 -0",
        ),
    ),
    Scenario(
        "connection-resets",
        "faults",
        "TCP reset on GetMembership, then on UpdateMembership",
        (seed(),),
        steps(
            Step(
                "create",
                declare(),
                "CREATE_COMPLETE",
                faults=(Fault("reset", "GetMembership"),),
            ),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 3)),
                "UPDATE_COMPLETE",
                faults=(Fault("reset", "UpdateMembership"),),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}))},
        (
            "Get A !reset",
            "Get A",
            "Get A",
            "Update A +1 -0 !reset",
            "Get A",
            "Update A +1 -0",
        ),
    ),
    Scenario(
        "api-hangs-past-deadline",
        "faults",
        "GetMembership hangs 40 s, function timeout 25 s: continued in a new Work step",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1),
                "CREATE_COMPLETE",
                faults=(Fault("hang", "GetMembership", seconds=40.0),),
                work_steps=2,
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        None,  # the hung call is recorded only when the emulator answers it, 40 s later
        timeout=25.0,
    ),
    Scenario(
        "api-hangs-past-service-timeout",
        "faults",
        "GetMembership hangs 40 s, function timeout 25 s, ServiceTimeout 45 s: FAILED in time",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1, ServiceTimeout="45"),
                "ROLLBACK_COMPLETE",
                faults=(Fault("hang", "GetMembership", seconds=40.0),),
                reason_starts=(
                    "The change could not finish within the resource's ServiceTimeout of 45 s "
                    "over 1 Work step(s) (last error from the service: ReadTimeoutError): "
                    "raise ServiceTimeout (up to 3600) and retry. No change was applied"
                ),
                answer_within=22.0,
                work_steps=1,
            ),
        ),
        {A: Expect(name=N0, ous=BASE_OUS)},
        (),  # the hung call is recorded only when the emulator answers it, 40 s later
        timeout=25.0,
    ),
    Scenario(
        "slow-api-out-of-time",
        "faults",
        "GetMembership takes 9 s of a 25 s timeout: no UpdateMembership is started in it, "
        "the next Work step makes the change",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipName=N1),
                "UPDATE_COMPLETE",
                faults=(Fault("hang", "GetMembership", seconds=9.0),),
                work_steps=2,
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        ("Get A", "Get A", "Get A", "Update A +0 -0 name"),
        timeout=25.0,
    ),
    Scenario(
        "ambiguous-write",
        "faults",
        "UpdateMembership hangs 12 s (read timeout 10 s): re-read, re-sent once, no double add",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 3)),
                "UPDATE_COMPLETE",
                faults=(Fault("hang", "UpdateMembership", seconds=12.0),),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}))},
        (
            "Get A",
            "Get A",
            "Get A",
            "Update A +1 -0",
            "Update A +1 -0 !ValidationException",  # the late first call, refused
        ),
        timeout=40.0,
        custom=late_write_settles,
    ),
    Scenario(
        "response-put-hang",
        "faults",
        "the ResponseURL never answers the first PUT: timed out after 10 s and retried",
        (seed(),),
        steps(
            Step(
                "create",
                declare(),
                "CREATE_COMPLETE",
                faults=(Fault("put_hang", seconds=15.0),),
            ),
        ),
        {A: Expect(name=N0, ous=BASE_OUS)},
        ("Get A",),
        custom=put_unanswered_then_ok,
    ),
    Scenario(
        "access-denied",
        "faults",
        "the role lacks security-ir:GetMembership",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1),
                "ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "GetMembership", times=None, error="AccessDeniedException"),
                ),
                reason_has=("Access denied for security-ir:GetMembership",),
            ),
        ),
        {A: Expect(name=N0, ous=BASE_OUS)},
        ("Get A !AccessDeniedException",),
    ),
    Scenario(
        "response-put-5xx",
        "faults",
        "the ResponseURL answers 500 twice: the answer is retried and delivered",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1),
                "CREATE_COMPLETE",
                faults=(Fault("put_status", status=500, times=2),),
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        ("Get A", "Update A +0 -0 name"),
        custom=put_retried,
    ),
    Scenario(
        "response-put-reset",
        "faults",
        "the ResponseURL resets the connection once: retried and delivered",
        (seed(),),
        steps(
            Step(
                "create",
                declare(),
                "CREATE_COMPLETE",
                faults=(Fault("put_reset", times=1),),
            ),
        ),
        {A: Expect(name=N0, ous=BASE_OUS)},
        ("Get A",),
        custom=put_unanswered_then_ok,
    ),
    Scenario(
        "response-put-403",
        "faults",
        "the ResponseURL answers 403 once: the sender does not retry it, the Answer task "
        "fails and the state machine's Retry delivers the same answer",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1),
                "CREATE_COMPLETE",
                faults=(Fault("put_status", status=403, times=1),),
                answer_status="SUCCESS",
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        ("Get A", "Update A +0 -0 name"),
        custom=put_forbidden,
    ),
)
