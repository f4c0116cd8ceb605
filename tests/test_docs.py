"""Every CLI command has help text and appears in the README."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from flows.cli import main

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_command_has_help_and_is_in_the_readme():
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert command.help and command.help.strip(), name
        assert f"chronology {name}" in README, name


def test_readme_quick_start_has_exactly_two_commands():
    quick = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in quick.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    assert "chronology build" in commands[0]
    assert "pytest" in commands[1]
