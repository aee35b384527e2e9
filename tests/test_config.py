"""Configuration files: envaudit.toml and [tool.envaudit] set the defaults of the options they
name, a typed flag wins, and every mistake is one line naming the file and the key.

No TensorFlow runs here: what a key does is read from the namespace ``cli.configured`` gives the
command (the one ``cli.main`` runs), and the one end-to-end proof is a check that stops at the
configured golden's absence before anything runs. Each test works in its own project folder
(``project``: a folder with ``.git``, where the search stops), so nothing above it can leak in.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from envaudit import cli, cli_parser, config
from envaudit.config_files import search
from envaudit.config_keys import BY_NAME, KEYS, option

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project (a repository's folder) that is the current folder."""
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, kind: str, body: str) -> Path:
    """A configuration ``body`` as envaudit.toml, or as pyproject.toml's [tool.envaudit]."""
    if kind == "envaudit.toml":
        path = folder / "envaudit.toml"
        path.write_text(body)
    else:
        path = folder / "pyproject.toml"
        path.write_text(f'[project]\nname = "app"\n\n[tool.envaudit]\n{body}\n')
    return path


def refused(capsys, argv: list[str]) -> str:
    """The one stderr line of a command refused for its configuration (exit 2)."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# Each key, a command that has its option, the destination it sets and the value it gets.
EACH_KEY = [
    ('golden = "bundles/det"', ["check"], "golden", "{root}/bundles/det"),
    ('name = "detector"', ["record"], "name", "detector"),
    ('modes = ["eager", "xla"]', ["check"], "modes", ("eager", "xla")),
    ('modes = "graph"', ["fleet", "check", "--local", "1"], "modes", ("graph",)),
    ('tolerance = { scores = "rtol:1e-5", "*" = "atol:1e-6" }', ["check"], "tolerance",
     ["scores=rtol:1e-5", "atol:1e-6"]),
    ('tolerance = ["boxes=atol:1e-4"]', ["check"], "tolerance", ["boxes=atol:1e-4"]),
    ('detections = { boxes = "b", scores = "s", classes = "c" }', ["record"], "detections",
     "boxes=b,scores=s,classes=c"),
    ("strict = true", ["compare", "a", "b"], "strict", True),
    ("redact = false", ["diff", "a", "b"], "no_redact", True),
    ("history = false", ["record"], "no_history", True),
    ("confirm = false", ["bisect"], "no_confirm", True),
    ("repeat = 3", ["check"], "repeat", 3),
    ('tf32 = "off"', ["record"], "tf32", "off"),
    ('tflite-kernels = "reference"', ["check"], "tflite_kernels", "reference"),
    ("tflite-threads = 2", ["record"], "tflite_threads", 2),
    ("growth-target = 0.25", ["check"], "growth_target", 0.25),
    ('format = "junit"', ["check"], "format", "junit"),
]


@pytest.mark.parametrize("kind", ["envaudit.toml", "pyproject.toml"])
@pytest.mark.parametrize(("body", "argv", "dest", "expected"), EACH_KEY,
                         ids=[case[0].split(" =")[0] + f"-{case[1][0]}" for case in EACH_KEY])
def test_each_key_sets_its_option_from_either_file(project, kind, body, argv, dest, expected):
    write(project, kind, body)
    if isinstance(expected, str):
        expected = expected.format(root=project)
    assert getattr(cli.configured(argv), dest) == expected
    # ...where the command line leaves it out: without the file, the option's own default.
    (project / ("envaudit.toml" if kind == "envaudit.toml" else "pyproject.toml")).unlink()
    assert getattr(cli.configured(argv), dest) != expected


def test_every_key_is_tested_and_names_an_option_of_the_commands_it_sets():
    assert {case[0].split(" =")[0] for case in EACH_KEY} == set(BY_NAME)
    grammar = cli.build_parser()
    commands = cli_parser.commands(grammar)
    for key in KEYS:
        reach = [n for n, p in commands.items() if option(key, n, p) is not None]
        assert reach, key.name
        assert all(n in commands and key.flag in commands[n]._option_string_actions
                   for n in key.commands or ()), key.name


def test_a_key_sets_only_the_commands_whose_option_means_the_same(project):
    write(project, "envaudit.toml", 'golden = "g"\nformat = "json"\nstrict = true')
    history = cli.configured(["history"])  # its --golden filters the runs listed
    assert history.golden is None and history.format == "text"
    assert cli.configured(["fingerprint"]).format == "text"
    assert cli.configured(["bisect"]).strict and cli.configured(["compare", "a", "b"]).strict
    assert cli.configured(["fleet", "check", "--local", "1"]).format == "json"


# --- a flag wins --------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "dest", "expected"), [
    (["--repeat", "5"], "repeat", 5),
    (["--rep", "5"], "repeat", 5),  # argparse's abbreviation is still the flag
    (["--tf3", "on"], "tf32", "on"),
    (["--no-str"], "strict", False),
    (["--red"], "no_redact", False),
    (["--history"], "no_history", False),
    (["--modes=xla"], "modes", ("xla",)),
    (["--tolerance", "atol:1"], "tolerance", ["atol:1"]),
])
def test_a_typed_flag_wins_over_the_file_however_abbreviated(project, typed, dest, expected):
    write(project, "envaudit.toml", 'repeat = 3\ntf32 = "off"\nstrict = true\nredact = false\n'
                                    'history = false\nmodes = ["eager"]\n'
                                    'tolerance = ["rtol:1"]')
    assert getattr(cli.configured(["check", *typed]), dest) == expected


def test_a_typed_name_sets_the_files_golden_aside_and_the_other_way_round(project):
    write(project, "envaudit.toml", 'golden = "bundles/det"')
    args = cli.configured(["check", "--nam", "detector"])
    assert (args.golden, args.name) == (None, "detector")
    write(project, "envaudit.toml", 'name = "detector"')
    args = cli.configured(["record", "--golden", "here"])
    assert (args.golden, args.name) == ("here", "default")


def test_given_sees_what_was_typed_not_what_defaulted():
    typed = cli_parser.given(cli.build_parser(), ["check", "--str", "--no-red", "--rep", "2"])
    assert {"strict", "no_redact", "repeat"} <= typed
    assert not {"tf32", "modes", "golden", "format", "handler"} & typed
    assert "local" in cli_parser.given(cli.build_parser(), ["fleet", "check", "--loc", "2"])


# --- which file -----------------------------------------------------------------------------


def test_envaudit_toml_wins_over_the_pyproject_beside_it_and_they_do_not_merge(project):
    write(project, "pyproject.toml", "repeat = 7\nstrict = true")
    write(project, "envaudit.toml", "repeat = 3")
    args = cli.configured(["check"])
    assert (args.repeat, args.strict) == (3, False)


def test_found_from_a_subfolder_with_golden_relative_to_the_files_folder(project):
    write(project, "pyproject.toml", 'golden = "golden/det"')
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    os.chdir(deep)
    assert cli.configured(["check"]).golden == str(project / "golden" / "det")
    assert config.value("golden") == str(project / "golden" / "det")
    assert config.value("golden", start=deep) == str(project / "golden" / "det")
    assert config.value("repeat") is None


def test_an_absolute_golden_stays_as_written(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("bundles") / "det"
    write(project, "envaudit.toml", f'golden = "{elsewhere}"')
    assert cli.configured(["check"]).golden == str(elsewhere)


def test_the_search_stops_at_the_nearest_project_configured_or_not(project):
    write(project, "envaudit.toml", "repeat = 3")
    inner = project / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    os.chdir(inner)
    assert cli.configured(["check"]).repeat == 1
    (inner / "pyproject.toml").unlink()
    (inner / ".git").mkdir()  # a repository inside the project: its own root
    assert cli.configured(["check"]).repeat == 1


def test_this_repository_has_no_configuration_so_the_suite_runs_on_defaults():
    """The suite runs in the repository's folder: its pyproject.toml must stay unconfigured,
    and the search stops there, so nothing above the checkout reaches a test."""
    found = search(ROOT)
    assert found.folder == ROOT and found.source is None


def test_a_command_without_a_configurable_option_reads_no_file(project):
    (project / "envaudit.toml").write_text("this is not TOML [")
    assert cli.configured(["fingerprint"]).format == "text"
    assert cli.configured(["history"]).limit == 20


# --- a file is a stranger's ----------------------------------------------------------------


@pytest.mark.parametrize(("body", "words"), [
    ("strct = true", ["unknown key \"strct\"", "did you mean 'strict'?", "keys: golden"]),
    ("tflite_threads = 2", ["did you mean 'tflite-threads'?"]),
    ('TF_ENABLE_ONEDNN_OPTS = "0"', ["unknown key \"TF_ENABLE_ONEDNN_OPTS\""]),
    ("[check]\nrepeat = 2", ["unknown key \"check\""]),
    ("repeat = 0", ["repeat = 0: must be 1 or more (as for --repeat)"]),
    ('repeat = "3"', ['repeat = "3": must be a whole number (as for --repeat)']),
    ("strict = 1", ["strict = 1: must be true or false"]),
    ('tf32 = "onn"', ["must be one of default, on, off (as for --tf32)", "did you mean 'on'?"]),
    ('format = "xml"', ["format = \"xml\": must be one of text, json, md, junit, html"]),
    ('modes = ["eager", "gpu"]', ["is not a list of modes from eager"]),
    ("growth-target = nan", ["is not a positive number"]),
    ('tolerance = { scores = "rtol:-1" }', ["--tolerance 'scores=rtol:-1'"]),
    ('detections = { boxes = "b" }', ["does not name scores, classes"]),
    ('golden = ""', ["golden = \"\": is empty"]),
    ('golden = "a"\nname = "b"', ["golden and name cannot both be set"]),
    ("repeat = 2\nstrict = tru", ["is not valid TOML: Invalid value (at line 2, column 10)"]),
])
def test_a_mistake_is_one_line_naming_the_file_and_the_key(project, capsys, body, words):
    path = write(project, "envaudit.toml", body)
    line = refused(capsys, ["check", "--no-history"])
    assert str(path) in line
    for word in words:
        assert word in line, line
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ


def test_a_pyproject_mistake_names_its_table(project, capsys):
    path = write(project, "pyproject.toml", "redact = \"no\"")
    line = refused(capsys, ["report"])
    assert f"pyproject.toml [tool.envaudit] ({path}): redact = \"no\": must be true or false" \
        in line
    (project / "pyproject.toml").write_text("[tool]\nenvaudit = 3\n")
    assert "tool.envaudit must be a table" in refused(capsys, ["report"])


@pytest.mark.parametrize("body", ["a = " + "[" * 5000, "a = " + "{b = " * 5000])
def test_toml_nested_past_the_parsers_depth_is_refused_in_one_line(project, capsys, body):
    write(project, "envaudit.toml", body)
    assert "is not valid TOML" in refused(capsys, ["check"])


def test_a_file_every_user_can_write_is_not_read(project, capsys):
    path = write(project, "envaudit.toml", 'golden = "/somewhere/else"')
    path.chmod(0o666)
    line = refused(capsys, ["check"])
    assert "is not read: every user can write it (mode 0666)" in line
    path.chmod(0o644)
    assert cli.configured(["check"]).golden == "/somewhere/else"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user takes root")
def test_another_users_file_is_refused_only_in_a_folder_every_user_can_write(project, capsys):
    path = write(project, "envaudit.toml", "repeat = 4")
    os.chown(path, 4242, 4242)
    assert cli.configured(["check"]).repeat == 4  # their project, which the user went into
    project.chmod(0o1777)  # like /tmp: anyone could have put it there
    line = refused(capsys, ["check"])
    assert "is not read: it belongs to another user (uid 4242) in a folder every user" in line


def test_a_configuration_that_is_not_a_regular_file_is_refused(project, capsys):
    os.mkfifo(project / "envaudit.toml")  # reading it would wait for a writer forever
    assert "is a FIFO, not a regular file" in refused(capsys, ["check"])
    assert stat.S_ISFIFO((project / "envaudit.toml").stat().st_mode)


def test_a_configured_golden_reaches_the_check_that_uses_it(project, capsys):
    write(project, "envaudit.toml", 'golden = "nowhere/bundle"')
    line = refused(capsys, ["check", "--no-history"])
    assert f"no golden bundle at {project / 'nowhere' / 'bundle'}" in line


def test_value_refuses_a_key_envaudit_does_not_have(project):
    with pytest.raises(ValueError, match="no configuration key 'goldn'"):
        config.value("goldn")


# --- envaudit config ------------------------------------------------------------------------


def test_config_shows_every_key_its_value_and_its_source_as_text(project, capsys):
    write(project, "pyproject.toml", "")
    toml = write(project, "envaudit.toml", 'golden = "g"\nmodes = ["eager", "graph"]\n'
                                           'redact = false\ntolerance = ["rtol:1e-5,atol:0"]')
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"configuration: envaudit.toml ({toml})"
    assert out[1] == (f"not read: {project / 'pyproject.toml'} (envaudit.toml in the"
                      " same folder wins)")
    rows = {line.split()[0]: line for line in out[3:]}
    assert set(rows) == {"key", *BY_NAME}
    assert rows["golden"].split() == [
        "golden", str(project / "g"), "envaudit.toml", f"({toml})"]
    assert rows["modes"].split()[:3] == ["modes", "eager,", "graph"]
    assert rows["redact"].split()[:2] == ["redact", "false"]
    assert rows["repeat"].split() == ["repeat", "1", "default"]
    assert rows["tolerance"].split()[1] == "rtol:1e-5,atol:0"
    column = out[3].index("value")  # one column of values, under its header
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in out[3:])


def test_config_as_json_names_sources_and_a_source_per_key(project, capsys):
    path = write(project, "pyproject.toml", "strict = true\nrepeat = 2")
    assert cli.main(["config", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    label = f"pyproject.toml [tool.envaudit] ({path})"
    assert doc["sources"] == [{"path": str(path), "kind": "pyproject.toml [tool.envaudit]",
                               "used": True, "note": ""}]
    assert doc["settings"]["strict"] == {"value": True, "source": label}
    assert doc["settings"]["repeat"] == {"value": 2, "source": label}
    assert doc["settings"]["redact"] == {"value": True, "source": "default"}
    assert doc["settings"]["modes"] == {"value": None, "source": "default"}
    assert list(doc["settings"]) == list(BY_NAME)
    assert doc["root"] == str(project)


def test_config_without_a_file_says_where_the_search_stopped(project, capsys):
    (project / "pyproject.toml").write_text('[project]\nname = "app"\n')
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"configuration: none; the search stopped at the project's folder"
                      f" {project}; every value is envaudit's default")
    assert out[1] == f"not read: {project / 'pyproject.toml'} (has no [tool.envaudit] table)"


def test_config_escapes_what_a_file_wrote(project, capsys):
    write(project, "envaudit.toml", 'name = "det\\u001b[31mred\\nnext"')
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "det\\x1b[31mred\\nnext" in out


def test_the_documentations_table_names_every_key_its_flag_and_the_commands_it_sets():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {cells[0].strip("` "): cells for line in text.splitlines()
            if line.startswith("| `") and (cells := line.strip("|").split(" | "))}
    assert set(rows) == set(BY_NAME)
    commands = cli_parser.commands(cli.build_parser())
    for key in KEYS:
        flag, reach = rows[key.name][1], rows[key.name][3]
        assert flag.strip() == f"`{key.flag}`"
        shown = {word for word in re.findall(r"`([a-z ]+)`", reach) if word in commands}
        assert shown == {n for n, p in commands.items() if option(key, n, p)}, key.name


def test_a_removed_current_folder_is_one_line(project, capsys):
    gone = project / "gone"
    gone.mkdir()
    os.chdir(gone)
    gone.rmdir()
    assert "cd into an existing folder" in refused(capsys, ["check"])


def test_a_file_that_turns_redaction_off_is_said_unless_a_flag_turns_it_back(project, capsys):
    """A project's file must not make a report meant to be shared show host and user names
    unnoticed: the command says where redaction was turned off, once, on stderr."""
    path = write(project, "envaudit.toml", "redact = false")
    assert cli.configured(["diff", "a", "b"]).no_redact is True
    err = capsys.readouterr().err
    assert err == (f"envaudit: note: redaction is off (redact = false in envaudit.toml ({path}));"
                   " --redact turns it back on\n")
    assert cli.configured(["diff", "a", "b", "--redact"]).no_redact is False
    assert cli.configured(["-q", "diff", "a", "b"]).no_redact is True
    assert capsys.readouterr().err == ""
