"""The function's time reserves: production defaults, set only through ``SIR_TIMING_*``.

The defaults are pinned here because every timeout scenario and the
README's timing statements are built on them; an override must reach the
modules that use it (checked in a fresh interpreter, since they are read at
import), and a bad value must stop the function at import, naming the variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sir_membership import answers, app, response, restore, service, steps, tasks
from sir_membership.errors import ConfigurationError
from sir_membership.timing import PREFIX, TIMING, Timing

SRC = Path(__file__).resolve().parents[1] / "src"

PRODUCTION = {
    "timer_reserve": 3.0,
    "bookkeeping_reserve": 8.0,
    "continue_min": 30.0,
    "answer_margin": 10.0,
    "busy_poll": 5.0,
    "longest_sleep": 5.0,
    "stale_read_grace": 120.0,
    "work_reserve": 20.0,
    "service_connect_timeout": 3.0,
    "service_read_timeout": 10.0,
    "answer_reserve": 6.0,
    "put_attempt_timeout": 10.0,
    "table_connect_timeout": 2.0,
    "table_read_timeout": 5.0,
}


def test_without_the_environment_the_production_values_hold() -> None:
    assert {f.name: getattr(Timing(), f.name) for f in fields(Timing)} == PRODUCTION
    assert Timing.from_environ({"OTHER": "1"}) == Timing()
    assert not [k for k in os.environ if k.startswith(PREFIX)], "the suite runs on the defaults"
    assert Timing() == TIMING
    assert TIMING.call_timeout == 13.0
    assert (app.TIMER_RESERVE, answers.BOOKKEEPING_RESERVE) == (3.0, 8.0)
    assert (steps.CONTINUE_MIN, steps.ANSWER_MARGIN, steps.BUSY_POLL) == (30.0, 10.0, 5.0)
    assert restore.WORK_RESERVE == 20.0
    policy = service.RetryPolicy()
    assert (policy.call_timeout, policy.answer_reserve) == (13.0, 6.0)
    assert response.DeliveryPolicy().attempt_timeout == 10.0
    config = tasks.security_ir().meta.config
    assert (config.connect_timeout, config.read_timeout) == (3.0, 10.0)
    for table in (app.REQUESTS.client, tasks.REQUESTS.client):
        assert (table.meta.config.connect_timeout, table.meta.config.read_timeout) == (2.0, 5.0)


@given(
    name=st.sampled_from([f.name for f in fields(Timing)]),
    seconds=st.floats(min_value=1e-3, max_value=1e5, allow_nan=False),
)
def test_each_variable_sets_its_field_only(name: str, seconds: float) -> None:
    timing = Timing.from_environ({PREFIX + name.upper(): repr(seconds)})
    assert getattr(timing, name) == seconds
    assert {f.name: getattr(timing, f.name) for f in fields(Timing) if f.name != name} == {
        k: v for k, v in PRODUCTION.items() if k != name
    }


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "-inf", "", "ten", "1e400", " "])
def test_a_value_that_is_not_positive_finite_seconds_is_refused_by_name(raw: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        Timing.from_environ({"SIR_TIMING_CONTINUE_MIN": raw})
    assert str(error.value) == "SIR_TIMING_CONTINUE_MIN must be a positive number of seconds"


def test_a_misspelt_variable_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ConfigurationError, match=r"^SIR_TIMING_CONTINUE_MINIMUM: no such"):
        Timing.from_environ({"SIR_TIMING_CONTINUE_MINIMUM": "5"})


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    clean.update(PYTHONPATH=str(SRC), AWS_DEFAULT_REGION="us-east-1", **env)
    return subprocess.run(
        [sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=False
    )


#: Runs the Work task in a fresh interpreter up to the point where it hands its
#: service factory to ``run_step``, and prints the longest sleep of the
#: service it builds (read when the task runs, not at import).
WORK_SERVICE = """
from sir_membership import tasks
class Done:
    def to_payload(self):
        return {}
def run_step(keys, step, requests, service, shell, tag):
    print(service(None)._policy.longest_sleep, end=" ")
    return Done()
class Context:
    function_name = "sir-membership-work"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sir-membership-work"
    aws_request_id = "task-request-1"
    def get_remaining_time_in_millis(self):
        return 60000
tasks.run_step = run_step
request = {"stackId": "s", "logicalId": "Membership", "requestId": "r", "attempt": 1}
tasks.work({"request": request, "step": 0}, Context())
"""


def test_the_environment_reaches_every_module_that_uses_a_reserve() -> None:
    code = WORK_SERVICE + (
        "from sir_membership import app, answers, restore, response, service, shell, steps\n"
        "c = tasks.security_ir().meta.config\n"
        "d = app.REQUESTS.client.meta.config\n"
        "e = tasks.JOURNAL.client.meta.config\n"
        "print(app.TIMER_RESERVE, answers.BOOKKEEPING_RESERVE, steps.CONTINUE_MIN,"
        " steps.ANSWER_MARGIN, steps.BUSY_POLL, shell.Shell.stale_read_grace,"
        " restore.WORK_RESERVE,"
        " service.RetryPolicy().call_timeout, service.RetryPolicy().answer_reserve,"
        " response.DeliveryPolicy().attempt_timeout, c.connect_timeout, c.read_timeout,"
        " d.connect_timeout, d.read_timeout, e.connect_timeout, e.read_timeout)\n"
    )
    values = {name: str(n + 1.5) for n, name in enumerate(PRODUCTION)}
    done = _python(
        code,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        **{PREFIX + k.upper(): v for k, v in values.items()},
    )
    assert done.returncode == 0, done.stderr
    t = {k: float(v) for k, v in values.items()}
    expected = [
        t["longest_sleep"],
        t["timer_reserve"],
        t["bookkeeping_reserve"],
        t["continue_min"],
        t["answer_margin"],
        t["busy_poll"],
        t["stale_read_grace"],
        t["work_reserve"],
        t["service_connect_timeout"] + t["service_read_timeout"],
        t["answer_reserve"],
        t["put_attempt_timeout"],
        t["service_connect_timeout"],
        t["service_read_timeout"],
        t["table_connect_timeout"],
        t["table_read_timeout"],
        t["table_connect_timeout"],
        t["table_read_timeout"],
    ]
    printed = [line for line in done.stdout.splitlines() if not line.startswith("{")]
    assert [float(v) for v in " ".join(printed).split()] == expected


def test_a_bad_value_stops_the_function_at_import() -> None:
    done = _python("import sir_membership.app", SIR_TIMING_TIMER_RESERVE="-3")
    assert done.returncode != 0
    assert "SIR_TIMING_TIMER_RESERVE must be a positive number of seconds" in done.stderr
