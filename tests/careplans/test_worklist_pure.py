"""Pure parts of the worklists: the rules table, working days, the state machine."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from careplans.worklist import states
from careplans.worklist.calendar import add_working_days, is_working_day, working_days_between
from careplans.worklist.rules import rules
from careplans.worklist.triggers import IMPLEMENTED
from fhir.errors import Conflict

README = Path(__file__).resolve().parents[2] / "careplans" / "worklist" / "README.md"


def test_the_rules_table_is_the_code_and_the_readme() -> None:
    table = rules()
    assert set(table) == IMPLEMENTED and len(table) == 7
    text = README.read_text()
    for rule in table.values():
        assert f"| `{rule.rule}` {rule.title} |" in text
        assert rule.trigger and rule.closes_when and rule.source and rule.period
        assert rule.due_working_days >= 0
    assert table["med-review"].performer_role == "R1290"  # owned by a pharmacist


@pytest.mark.parametrize(("start", "n", "due"), [
    (date(2026, 9, 4), 2, date(2026, 9, 8)),  # Friday: Monday, Tuesday
    (date(2026, 8, 28), 1, date(2026, 9, 1)),  # Friday before the Summer bank holiday
    (date(2026, 12, 24), 2, date(2026, 12, 30)),  # Christmas, substitute Boxing Day
    (date(2027, 3, 25), 2, date(2027, 3, 31)),  # Good Friday and Easter Monday 2027
    (date(2025, 12, 31), 1, date(2026, 1, 2)),  # New Year's Day
    (date(2026, 9, 5), 0, date(2026, 9, 7)),  # a Saturday's "at once" is Monday
])
def test_working_days(start: date, n: int, due: date) -> None:
    assert add_working_days(start, n) == due
    assert working_days_between(start, due) == n or n == 0


def test_bank_holidays_are_not_working_days() -> None:
    assert not is_working_day(date(2026, 8, 31))
    assert not is_working_day(date(2027, 12, 28))
    assert is_working_day(date(2026, 9, 1))


def test_the_state_machine_refuses_with_words() -> None:
    for old, new in (("completed", "in-progress"), ("cancelled", "requested")):
        with pytest.raises(Conflict, match="already"):
            states.check_transition(old, new)
    with pytest.raises(Conflict, match="Claim it first"):
        states.check_transition("requested", "in-progress")
    states.check_transition("accepted", "in-progress")
    states.check_transition("in-progress", "entered-in-error")
