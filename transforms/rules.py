"""The rules file: significance, escalations, merging, collapsing and visit standards.

One YAML file holds every weight, threshold and sentence the chronology uses
(`transforms/rules.yml` is the default; `chronology build --rules FILE` replaces it).
It is checked on load by the pydantic models below (unknown keys are errors), then
against the event types the pipeline knows. Every error names the file and the line.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from transforms.stage import EVENT_TYPES

DEFAULT_RULES = Path(__file__).with_name("rules.yml")
LEVELS = ("key", "significant", "context")
# Periods the shape stage derives (see transforms/periods.py); visit standards name them.
PERIOD_KINDS = ("cin_episode", "early_help", "cin_plan", "cp_plan", "looked_after",
                "placement", "missing", "legal_status")
# Escalations are tracked as bits of one 64-bit mask per event.
MAX_ESCALATIONS = 64
_ID = r"^[a-z][a-z0-9_]*$"


class RulesError(ValueError):
    """The rules file cannot be used; the message names the file and line."""


class _Strict(BaseModel):
    # strict: a score of `true` or "70" is a mistake, not 1 or 70.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Levels(_Strict):
    key: int = Field(ge=1, le=100)
    significant: int = Field(ge=1, le=100)
    context: int = Field(ge=1, le=100)


class EventType(_Strict):
    score: int = Field(ge=0, le=100)
    category: str = Field(min_length=1)
    title: str = Field(min_length=1)
    one: str = Field(min_length=1)
    plural: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    codes: dict[str, str] = Field(default_factory=dict)


class _Escalation(_Strict):
    id: str = Field(pattern=_ID)
    event_types: list[str] = Field(min_length=1)
    points: int = Field(ge=-100, le=100)
    reason: str = Field(min_length=1)
    title: str | None = Field(default=None, min_length=1)


class FirstOfChild(_Escalation):
    kind: Literal["first_of_child"]


class Repeated(_Escalation):
    kind: Literal["repeated"]
    count: int = Field(ge=2)
    within_days: int = Field(ge=1)


class CodeIn(_Escalation):
    kind: Literal["code_in", "code_not_in"]
    codes: list[str] = Field(min_length=1)


class OutcomeMentions(_Escalation):
    kind: Literal["outcome_mentions"]
    phrases: list[str] = Field(min_length=1)


class NotSeen(_Escalation):
    kind: Literal["not_seen"]


class NotSeenAlone(_Escalation):
    kind: Literal["not_seen_alone"]
    from_age_years: float = Field(default=0, ge=0, le=25)


class Flagged(_Escalation):
    kind: Literal["flagged"]


class TextMentions(_Escalation):
    kind: Literal["text_mentions"]
    patterns: list[str] = Field(min_length=1)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {error}"
                                 ) from None
        return patterns


Escalation = Annotated[FirstOfChild | Repeated | CodeIn | OutcomeMentions | NotSeen | NotSeenAlone
                       | Flagged | TextMentions, Field(discriminator="kind")]


class Join(_Strict):
    event_type: str
    joins: str
    same: Literal["record", "episode"]
    within_days: int | None = Field(default=None, ge=0)


class Merge(_Strict):
    join_same_day: list[str]
    joins: list[Join] = Field(default_factory=list)
    # At most 63 groups, each of at least one type: a group's number is 6 bits of a key.
    groups: list[Annotated[list[str], Field(min_length=1)]] = Field(max_length=63)


class Collapse(_Strict):
    min_run: int = Field(ge=2)
    history_years: int | None = Field(default=None, ge=1, le=100)


class VisitStandard(_Strict):
    id: str = Field(pattern=_ID)
    period: Literal[PERIOD_KINDS]  # type: ignore[valid-type]
    visits: list[str] = Field(min_length=1)
    max_days: int = Field(ge=1)
    score: int = Field(ge=0, le=100)
    reason: str = Field(min_length=1)


class Rules(_Strict):
    levels: Levels
    event_types: dict[str, EventType]
    escalations: list[Escalation]
    merge: Merge
    collapse: Collapse
    visit_gaps: list[VisitStandard]
    _digest: str = PrivateAttr(default="")

    @property
    def digest(self) -> str:
        """Short SHA-256 of the file's bytes: the rules version on the page and manifest."""
        return self._digest

    def level_of(self, score: int) -> str | None:
        """The level a score earns, or None when it is below context (left out)."""
        for level in LEVELS:
            if score >= getattr(self.levels, level):
                return level
        return None


def load_rules(path: Path | str = DEFAULT_RULES) -> Rules:
    """Read and check a rules file; a RulesError names the line of the first problem."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as error:
        raise RulesError(f"cannot read the rules file {path}: {error.strerror}") from None
    try:
        node = yaml.compose(text.decode("utf-8"), Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        raise RulesError(f"{path}: not a readable YAML file: {error}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{path}: the rules must be a mapping of sections (levels, "
                         "event_types, ...)")
    _no_repeated_keys(path, node)
    try:
        rules = Rules(**data)
    except ValidationError as error:
        first = error.errors()[0]
        hint = (" (YAML reads an unquoted yes, no, on or off as true or false: quote it)"
                if isinstance(first.get("input"), bool) else "")
        raise RulesError(_where(path, node, first["loc"]) + f": {_field(first['loc'])}: "
                         f"{first['msg']}{hint}") from None
    _check(rules, path, node)
    rules._digest = hashlib.sha256(text).hexdigest()[:12]
    return rules


def _check(rules: Rules, path: Path, node: yaml.Node) -> None:
    """What the models alone cannot see: known event types, ids, thresholds in order."""

    def fail(loc: tuple, message: str) -> None:
        raise RulesError(f"{_where(path, node, loc)}: {_field(loc)}: {message}")

    levels = rules.levels
    if not levels.key > levels.significant > levels.context:
        fail(("levels",), "thresholds must fall from key to significant to context")
    # A misspelt type is reported where it is written, before the type it leaves out.
    for name in rules.event_types:
        if name not in EVENT_TYPES:
            fail(("event_types", name), f"'{name}' is not an event type (see docs/events.md)")
    missing = [t for t in EVENT_TYPES if t not in rules.event_types]
    if missing:
        fail(("event_types",), f"every event type needs a score; missing: {', '.join(missing)}")
    if len(rules.escalations) > MAX_ESCALATIONS:
        fail(("escalations",), f"at most {MAX_ESCALATIONS} escalations")
    seen: set[str] = set()
    for index, escalation in enumerate(rules.escalations):
        if escalation.id in seen:
            fail(("escalations", index, "id"), f"'{escalation.id}' is used twice")
        seen.add(escalation.id)
        _known(escalation.event_types, ("escalations", index, "event_types"), fail)
    _known(rules.merge.join_same_day, ("merge", "join_same_day"), fail)
    for index, join in enumerate(rules.merge.joins):
        _known([join.event_type, join.joins], ("merge", "joins", index), fail)
        if join.event_type == join.joins:
            fail(("merge", "joins", index), "an event type cannot join itself")
    grouped: set[str] = set()
    for index, group in enumerate(rules.merge.groups):
        _known(group, ("merge", "groups", index), fail)
        twice = grouped & set(group)
        if twice:
            fail(("merge", "groups", index), f"{', '.join(sorted(twice))} is already in a "
                 "group; an event type can merge in one group only")
        grouped |= set(group)
    for index, standard in enumerate(rules.visit_gaps):
        _known(standard.visits, ("visit_gaps", index, "visits"), fail)


def _no_repeated_keys(path: Path, node: yaml.Node) -> None:
    """YAML lets a later key silently replace an earlier one; in rules that hides a
    mistake, so a key given twice is an error naming both lines."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in current.value:
                line = key.start_mark.line + 1
                if key.value in seen:
                    raise RulesError(f"{path} line {line}: '{key.value}' is given twice "
                                     f"(also line {seen[key.value]})")
                seen[key.value] = line
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _known(types: list[str], loc: tuple, fail: Any) -> None:
    for position, name in enumerate(types):
        if name not in EVENT_TYPES:
            fail((*loc, position), f"'{name}' is not an event type (see docs/events.md)")


def _field(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _where(path: Path, node: yaml.Node | None, loc: tuple) -> str:
    """`path line N` for the YAML node at `loc` (or its nearest parent that exists)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    line = key.start_mark.line + 1
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break  # pydantic adds parts (the union's kind) that are not in the file
        node = child
    return f"{path} line {line}"
