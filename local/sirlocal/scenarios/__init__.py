"""End-to-end scenarios as data, shared by ``tests/e2e`` and ``sirlocal.reliability``.

Why: a reliability claim is only as good as the runs behind it. Each
:class:`Scenario` says what is seeded in the emulator, which stack
operations run (with which faults armed), and what must hold afterwards:
the stack statuses, the membership's final state, and the exact list of
security-ir calls. :func:`run_scenario` plays it through the real handler
(:mod:`sirlocal.driver`) and returns every broken expectation, so the tests
assert on it and the reliability report tabulates it from the same source.

Every run also checks, whatever the scenario: each answer honours the
response contract and arrives before the invocation's deadline (the
ServiceTimeout, once the request's execution carries it on the local Step
Functions endpoint, see :mod:`sirlocal.states_api`), every task of the
execution ends as Lambda would report success (unless the scenario breaks
it on purpose), and the functions' logs (the dispatcher's and the tasks')
hold no responder name, email, job title, membership name or ResponseURL
query/signature.

Where things are (each module imports only modules listed above it):

- :mod:`.model`: :class:`Fault`, :class:`Step`, :class:`Scenario`, :class:`Run`,
  :class:`ScenarioResult`: the data model and its descriptions;
- :mod:`.shared`: values the table shares (``N0``, ``BASE_OUS``, ``TRIAGE_ON``,
  ``UNDECLARED``, ...) and ``steps(...)``;
- :mod:`.play`: :func:`run_scenario`, :func:`configure_tasks`,
  :func:`scaled_timing`: how a scenario is played on the driver, and the checks
  every step gets (deliveries, answers, deadlines);
- :mod:`.checks`: checks on a finished run (``Scenario.custom``): call lists
  with repeated reads or alternatives, response PUTs, applied updates;
- :mod:`.custom`: custom plays that drive stacks themselves (duplicate
  deliveries, a busy membership, a slow or unreachable table) and seed hooks;
- :mod:`.table_lifecycle`, :mod:`.table_faults`, :mod:`.table_rollback` and
  :mod:`.table`: the table itself, in sections, and :data:`SCENARIOS` /
  :data:`SCENARIOS_BY_NAME` (a ``reliability_only`` reason is next to its scenario);
- :mod:`.bad_inputs`: :data:`INVALID_INPUTS` and :func:`check_bad_input`.

Fixtures as data (memberships, people, OU ids) and the checks on them are in
:mod:`sirlocal.fixtures`; import them from there.
"""

from sirlocal.scenarios.bad_inputs import (
    BAD_INPUT_ANSWER_SECONDS,
    INVALID_INPUTS,
    BadInput,
    BadInputResult,
    check_bad_input,
)
from sirlocal.scenarios.checks import calls_with_rereads
from sirlocal.scenarios.model import Fault, Run, Scenario, ScenarioResult, Step
from sirlocal.scenarios.play import configure_tasks, run_scenario, scaled_timing
from sirlocal.scenarios.table import SCENARIOS, SCENARIOS_BY_NAME

__all__ = [
    "BAD_INPUT_ANSWER_SECONDS",
    "INVALID_INPUTS",
    "SCENARIOS",
    "SCENARIOS_BY_NAME",
    "BadInput",
    "BadInputResult",
    "Fault",
    "Run",
    "Scenario",
    "ScenarioResult",
    "Step",
    "calls_with_rereads",
    "check_bad_input",
    "configure_tasks",
    "run_scenario",
    "scaled_timing",
]
