"""The rules file: the default loads, and every mistake is an error naming its line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flows.cli import main
from transforms.rules import DEFAULT_RULES, RulesError, load_rules
from transforms.stage import EVENT_TYPES

DEFAULT_TEXT = DEFAULT_RULES.read_text(encoding="utf-8")


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def _variant(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    assert old in DEFAULT_TEXT, old
    text = DEFAULT_TEXT.replace(old, new, 1)
    path = tmp_path / "rules.yml"
    path.write_text(text, encoding="utf-8")
    return path, text


def test_default_rules_cover_every_event_type() -> None:
    rules = load_rules()
    assert list(rules.event_types) == list(rules.event_types)  # order is process order
    assert set(rules.event_types) == set(EVENT_TYPES)
    assert rules.levels.key > rules.levels.significant > rules.levels.context
    assert len(rules.digest) == 12


def test_the_hash_follows_the_bytes(tmp_path: Path) -> None:
    # The hash is the rules' version on pages and in the manifest: any edit changes it.
    path, _ = _variant(tmp_path, "min_run: 2", "min_run: 3")
    assert load_rules(path).digest != load_rules().digest
    copy = tmp_path / "copy.yml"
    copy.write_text(DEFAULT_TEXT, encoding="utf-8")
    assert load_rules(copy).digest == load_rules().digest


# Each case: the edit, the line it must name (found by a fragment of the edited text),
# and words the message must contain.
MISTAKES = [
    ("{score: 90, category: family, title: Born", "{score: 190, category: family, title: Born",
     "score: 190", "less than or equal to 100"),
    ("  min_run: 2", "  min_run: 2\n  colour: red", "colour: red", "Extra inputs"),
    ("event_types: [missing_start], count: 3", "event_types: [missing_startt], count: 3",
     "missing_startt", "'missing_startt' is not an event type"),
    ("kind: repeated, event_types: [referral]", "kind: sometimes, event_types: [referral]",
     "kind: sometimes", "sometimes"),
    ("patterns: ['\\bexclu(?:ded|sion)\\b']", "patterns: ['\\bexclu(?:ded|sion\\b']",
     "exclu(?:ded|sion\\b", "not a valid regular expression"),
    ("  key: 70\n  significant: 40", "  key: 30\n  significant: 40", "key: 30",
     "thresholds must fall"),
    ("  death:\n", "  dead:\n", "dead:", "'dead' is not an event type"),
    ("    - [missing_start, missing_end]", "    - [missing_start, missing_end, birth]",
     "missing_end, birth]", "already in a group"),
    ("  - {id: factor_trafficking,", "  - {id: factor_missing,",
     "codes: [12A]", "used twice"),
    # YAML would let the second key win without a word.
    ("  key: 70\n", "  key: 70\n  key: 75\n", "key: 75", "given twice"),
    # Strict values: true is not a score, and an unquoted NO is YAML's false.
    ("{score: 90, category: family, title: Born", "{score: true, category: family, title: Born",
     "score: true", "valid integer"),
    ('codes: ["NO", REFU]', "codes: [NO, REFU]", "codes: [NO, REFU]", "quote it"),
    ("    - [missing_start, missing_end]", "    - []", "    - []", "at least 1 item"),
]


@pytest.mark.parametrize(("old", "new", "line_fragment", "words"), MISTAKES)
def test_mistakes_name_their_line(tmp_path: Path, old: str, new: str, line_fragment: str,
                                  words: str) -> None:
    path, text = _variant(tmp_path, old, new)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    message = str(caught.value)
    line = _line_of(text, line_fragment.split("\n")[0])
    # The error may name the mapping's first line when the mapping spans several.
    assert f"{path} line " in message
    named = int(message.split(" line ")[1].split(":")[0])
    assert line - 2 <= named <= line, message
    assert words in message, message


def test_a_rules_file_missing_an_event_type_is_refused(tmp_path: Path) -> None:
    start = DEFAULT_TEXT.index("  death:\n")
    last = 'reason: "Death of the child"}'
    end = DEFAULT_TEXT.index(last) + len(last)
    path = tmp_path / "rules.yml"
    path.write_text(DEFAULT_TEXT[:start] + DEFAULT_TEXT[end + 1:], encoding="utf-8")
    with pytest.raises(RulesError, match="missing: death"):
        load_rules(path)


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yml"
    deep.write_text("[" * 5000 + "]" * 5000, encoding="utf-8")
    with pytest.raises(RulesError, match="not a readable YAML file"):
        load_rules(deep)
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "absent.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("levels: [unclosed", encoding="utf-8")
    with pytest.raises(RulesError, match="not a readable YAML file"):
        load_rules(broken)
    listed = tmp_path / "list.yml"
    listed.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(RulesError, match="mapping of sections"):
        load_rules(listed)


def test_build_refuses_a_bad_rules_file_before_starting(tmp_path: Path) -> None:
    path, _ = _variant(tmp_path, "  min_run: 2", "  min_run: 1")
    result = CliRunner().invoke(main, ["build", "--source", str(tmp_path / "none.sqlite"),
                                       "--rules", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "line" in result.output and "min_run" in result.output
