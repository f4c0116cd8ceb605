"""Write the raw-table suites from the source contract: ``python -m expectations.generate``.

A test checks that the committed files equal what this writes, so a change to the
contract shows up as a reviewable change to the suites.
"""

from __future__ import annotations

import json
import sys

from expectations import suite_path
from transforms.conform import EXISTS, KEY_COPIES, NOT_BEFORE_EARLIEST, READABLE_JSON
from transforms.ssd import FLAG_VALUES, OWNER_PERSON, PERSON_TABLE, TABLES, SourceTable

AS_OF = "as_of"
# Regex for text that a browser would treat as markup or a script handler. Written
# without \s, \b or \w so that pandas hands it to pyarrow's RE2 engine instead of
# running Python's `re` row by row over millions of case notes.
MARKUP = r"(?i)(?:<[ \t\r\n]*/?[ \t\r\n]*[a-z!][^>]*>|on[a-z]+[ \t\r\n]*=|javascript:)"


def _expect(kind: str, rule: str, reason: str, severity: str = "reject", show: str | None = None,
            **kwargs) -> dict:
    meta = {"rule": rule, "reason": reason, "severity": severity}
    if show:
        meta["show"] = show  # the column whose value {value} stands for, if not the checked one
    return {"type": kind, "kwargs": kwargs, "meta": meta}


def _exists(column: str, rule: str, reason: str) -> dict:
    """The reference in `column` names an existing row (see conform.with_existence)."""
    return _expect("expect_column_values_to_be_in_set", rule, reason, show=column,
                   column=EXISTS + column, value_set=[True])


def raw_suite(table: SourceTable) -> dict:
    """Row-level checks for one source table, in the order a reject names the first."""
    out = [
        _expect("expect_column_values_to_not_be_null", "key.present",
                f"the row has no {table.key}", column=table.key),
        _expect("expect_column_values_to_be_between", "key.unique",
                f"another row with this {table.key} says something different; "
                "it cannot be told which is right", column=KEY_COPIES, max_value=1),
    ]
    if table.owner is not None:
        owner = table.owner
        out += [
            _expect("expect_column_values_to_not_be_null", "owner.present",
                    f"the row has no {owner.column}", column=owner.column),
            _exists(owner.column, "owner.exists",
                    f"{owner.column} {{value}} does not match any {owner.table} row"),
            _expect("expect_column_values_to_not_be_null", "owner.one_child",
                    f"its {owner.table} row does not belong to exactly one child",
                    column=OWNER_PERSON),
            _exists(OWNER_PERSON, "person.exists",
                    f"its {owner.table} row names person id {{value}}, who is not in "
                    f"{PERSON_TABLE}"),
        ]
    elif table.name != PERSON_TABLE:
        out += [
            _expect("expect_column_values_to_not_be_null", "person.present",
                    f"the row has no person id ({table.person})", column=table.person),
            _exists(table.person, "person.exists",
                    f"person id {{value}} in {table.person} is not in {PERSON_TABLE}"),
        ]
    for parent in table.parents:
        out.append(_exists(parent.column, "parent.exists",
                           f"{parent.column} {{value}} does not match any {parent.table} row"))
    for start, end in table.periods:
        out.append(_expect(
            "expect_column_pair_values_a_to_be_greater_than_b", "dates.end_after_start",
            f"{end} {{value}} is before {start}", column_A=end, column_B=start,
            or_equal=True, ignore_row_if="either_value_is_missing"))
    for column in table.event_dates:
        out.append(_expect(
            "expect_column_values_to_be_between", "dates.not_future",
            f"{column} {{value}} is after the date the data is as of", column=column,
            max_value={"$PARAMETER": AS_OF}))
        if table.name != PERSON_TABLE:
            out.append(_expect(
                "expect_column_values_to_be_in_set", "dates.not_before_birth",
                f"{column} {{value}} is more than 40 weeks before the child's birth",
                show=column, column=NOT_BEFORE_EARLIEST + column, value_set=[True]))
    for column, code_set in table.codes.items():
        out.append(_expect(
            "expect_column_values_to_be_in_set", "codes.known",
            f"{column} '{{value}}' is not a known code", column=column,
            value_set=list(code_set.codes)))
    for column in table.flags:
        out.append(_expect(
            "expect_column_values_to_be_in_set", "flags.yes_no",
            f"{column} '{{value}}' is not a yes/no value", column=column,
            value_set=sorted(set(FLAG_VALUES.values()))))
    for column in table.json:
        out.append(_expect(
            "expect_column_values_to_be_in_set", "json.valid",
            f"{column} is not valid JSON", column=READABLE_JSON + column, value_set=[True]))
    for column in table.text:
        out.append(_expect(
            "expect_column_values_to_not_match_regex", "text.markup",
            f"{column} contains HTML markup or script; it is kept and shown as plain text",
            severity="warning", column=column, regex=MARKUP))
    return {"name": table.name, "expectations": out,
            "meta": {"generated_from": "transforms/ssd.py",
                     "regenerate_with": "python -m expectations.generate"}}


def render(suite: dict) -> str:
    return json.dumps(suite, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    for table in TABLES:
        path = suite_path(table.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(raw_suite(table)), encoding="utf-8")
    print(f"wrote {len(TABLES)} suites to {suite_path(TABLES[0].name).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
