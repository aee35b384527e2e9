"""The GitHub action (``action.yml``) and the GitLab template
(``integrations/envaudit.gitlab-ci.yml``).

What is proved here:
- both files are valid against JSON Schemas written from GitHub's and GitLab's syntax references
  (``tests/schemas/``), and the schemas refuse what those references refuse;
- no input reaches a ``run:`` script as a ``${{ }}`` expression (script injection): inputs go
  through ``env:`` and are read as ``"$VARIABLE"``;
- every ``envaudit`` command the action runs is shown in the README's "In CI" section, and every
  one the GitLab template runs in ``docs/ci.md``;
- the Markdown a check writes fits a job summary (1 MiB), whatever the result;
- the action's shell, run for real by bash the way a runner runs it (the ``${{ }}`` of ``env:``
  put in by ``Runner``): one real check against the session's golden, the summary appended,
  the outputs written, the exit code passed on; a missing or corrupt golden, hostile inputs and
  an oversized report handled. pip is the only thing stood in for (a recording ``python``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, cli_env, run_cli
from jsonschema import Draft202012Validator
from test_check_md_size import drifted_canary

from envaudit.attribute.types import Cause
from envaudit.fingerprint import capture
from envaudit.fingerprint.types import Change
from envaudit.redact_result import shareable
from envaudit.render.comment_size import TARGET
from envaudit.render.formats import writer

ACTION = ROOT / "action.yml"
GITLAB = ROOT / "integrations" / "envaudit.gitlab-ci.yml"
SCHEMAS = Path(__file__).parent / "schemas"
JOB_SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a step's summary over 1 MiB
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def steps(action: dict) -> dict[str, dict]:
    return {step["name"]: step for step in action["runs"]["steps"]}


# --- the schemas -------------------------------------------------------------------------------

def test_the_action_is_valid_composite_action_metadata():
    action = load(ACTION)
    errors = [f"{e.json_path}: {e.message}"
              for e in validator("github-action.schema.json").iter_errors(action)]
    assert errors == []
    assert action["runs"]["using"] == "composite"
    uses = [s["uses"] for s in action["runs"]["steps"] if "uses" in s]
    assert uses == ["actions/setup-python@v5", "actions/upload-artifact@v4"]


def _without_shell(action: dict) -> None:
    del steps(action)["Job summary"]["shell"]


def _unknown_top_level_key(action: dict) -> None:
    action["permissions"] = {"contents": "read"}


def _output_without_value(action: dict) -> None:
    del action["outputs"]["verdict"]["value"]


def _run_and_uses_in_one_step(action: dict) -> None:
    steps(action)["Job summary"]["uses"] = "actions/upload-artifact@v4"


def _input_without_description(action: dict) -> None:
    del action["inputs"]["golden"]["description"]


def _unknown_step_key(action: dict) -> None:
    steps(action)["Job summary"]["timeout-minutes"] = 5


@pytest.mark.parametrize("spoil", [_without_shell, _unknown_top_level_key, _output_without_value,
                                   _run_and_uses_in_one_step, _input_without_description,
                                   _unknown_step_key])
def test_the_action_schema_refuses_what_github_refuses(spoil):
    action = load(ACTION)
    spoil(action)
    assert list(validator("github-action.schema.json").iter_errors(action))


def test_the_gitlab_template_is_a_valid_hidden_job_with_its_junit_report():
    template = load(GITLAB)
    assert list(validator("gitlab-ci.schema.json").iter_errors(template)) == []
    job = template[".envaudit-check"]
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] in job["artifacts"]["paths"]
    assert set(job["variables"]) >= {"ENVAUDIT_GOLDEN", "ENVAUDIT_MODES", "ENVAUDIT_STRICT",
                                     "ENVAUDIT_ARGS", "ENVAUDIT_INSTALL"}


@pytest.mark.parametrize("spoil", [
    lambda job: job["artifacts"].update(when="sometimes"),
    lambda job: job.update(scripts=job.pop("script")),
    lambda job: job["artifacts"]["reports"].update(junits="report.xml"),
])
def test_the_gitlab_schema_refuses_what_gitlab_refuses(spoil):
    template = load(GITLAB)
    spoil(template[".envaudit-check"])
    assert list(validator("gitlab-ci.schema.json").iter_errors(template))
    # and a job that runs needs a script or a template to extend
    assert list(validator("gitlab-ci.schema.json").iter_errors({"check": {"stage": "test"}}))


# --- script injection ----------------------------------------------------------------------------

def expressions_in_run_scripts(action: dict) -> list[str]:
    """The ``${{ }}`` expressions written inside ``run:`` text, where the runner pastes their
    values into the script before the shell reads it."""
    return [found for step in action["runs"]["steps"]
            for found in EXPRESSION.findall(step.get("run", ""))]


def test_no_expression_is_pasted_into_a_run_script():
    action = load(ACTION)
    assert expressions_in_run_scripts(action) == []
    # the inputs reach the scripts through env: instead
    passed = {e for step in action["runs"]["steps"] for value in step.get("env", {}).values()
              for e in EXPRESSION.findall(str(value))}
    assert {f"inputs.{name}" for name in ("golden", "modes", "strict", "args", "install")} <= passed


def test_the_injection_rule_finds_an_input_pasted_into_a_run_script():
    action = copy.deepcopy(load(ACTION))
    steps(action)["Check against the golden"]["run"] += 'echo "${{ inputs.golden }}"\n'
    assert expressions_in_run_scripts(action) == ["inputs.golden"]


# --- the commands are the docs' commands ---------------------------------------------------------

def commands_in(script: str) -> list[str]:
    """The ``envaudit ...`` lines of a shell script, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("envaudit ")]


def pattern_of(command: str) -> re.Pattern[str]:
    """A command of a script as a pattern a documented command matches: ``"$X"`` stands for one
    word (``html="$X"`` for ``html=`` and a word), ``"$@"`` or ``"${xs[@]}"`` for any number,
    ``-o`` for ``--output``; redirections are left out."""
    words = shlex.split(command)
    parts, skip = [re.escape(words[0])], False
    for word in words[1:]:
        if skip or re.fullmatch(r"\d?>>?", word):
            skip = not skip
            continue
        if word == "$@" or re.fullmatch(r"\$\{\w+\[@\]\}", word):
            parts.append(r"(?:\s+\S+)*")
        elif "$" in word:
            pieces = re.split(r"(\$\{?\w+\}?)", word)
            parts.append(r"\s+" + "".join(r"\S+" if piece.startswith("$") else re.escape(piece)
                                          for piece in pieces))
        elif word in ("-o", "--output"):
            parts.append(r"\s+(?:-o|--output)")
        else:
            parts.append(r"\s+" + re.escape(word))
    return re.compile("".join(parts))


def shown_commands(markdown: str) -> list[str]:
    """The ``envaudit ...`` commands in a Markdown text's code blocks (after ``$ `` or alone)."""
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", markdown, flags=re.S):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("envaudit "):
                commands.append(line)
    return commands


def readme_in_ci() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n## In CI\n" in text, "README.md has no '## In CI' section"
    return text.split("\n## In CI\n", 1)[1].split("\n## ", 1)[0]


def test_every_envaudit_command_the_action_runs_is_shown_in_the_readme():
    ran = [c for step in load(ACTION)["runs"]["steps"] for c in commands_in(step.get("run", ""))]
    assert ran, "the action runs no envaudit command"
    shown = shown_commands(readme_in_ci())
    for command in ran:
        assert any(pattern_of(command).fullmatch(s) for s in shown), (command, shown)


def test_every_envaudit_command_the_gitlab_template_runs_is_shown_in_the_ci_docs():
    ran = [c for script in load(GITLAB)[".envaudit-check"]["script"] for c in commands_in(script)]
    assert ran
    shown = shown_commands((ROOT / "docs" / "ci.md").read_text(encoding="utf-8"))
    for command in ran:
        assert any(pattern_of(command).fullmatch(s) for s in shown), (command, shown)


def test_the_command_patterns_tell_a_shown_command_from_another():
    pattern = pattern_of('envaudit check --golden "$G" "${opts[@]}" --format md -o "$r" 2> "$l"')
    assert pattern.fullmatch("envaudit check --golden g --format md -o r.md")
    assert pattern.fullmatch("envaudit check --golden g --strict --modes xla --format md"
                             " --output r")
    assert not pattern.fullmatch("envaudit check --golden g --format json -o r.md")
    assert not pattern.fullmatch("envaudit check --format md -o r.md")
    pattern = pattern_of('envaudit check -o "$m" --also html="$r"')
    assert pattern.fullmatch("envaudit check -o m.md --also html=r.html")
    assert not pattern.fullmatch("envaudit check -o m.md --also junit=r.html")


# --- the job summary's size ----------------------------------------------------------------------

def test_the_markdown_of_the_largest_check_fits_a_job_summary():
    # The renderer keeps a report under TARGET characters; a character is at most 4 bytes of
    # UTF-8, so every report fits a job summary with room to spare.
    assert TARGET * 4 <= JOB_SUMMARY_LIMIT
    here = capture()
    causes = tuple(Cause(f"env.OMP_VAR_{i}: unset -> '{i}' ✓😀", "possible",
                         (f"re-run {i} put the setting back 🔁" * 6,)) for i in range(400))
    wide = tuple(Change(f"packages.lib-😀-{i:04d}", "1.0", "1.1 ✓", "packages", False)
                 for i in range(2000))
    base = drifted_canary(300, here)
    result = dataclasses.replace(base, causes=causes,
                                 fingerprint_changes=base.fingerprint_changes + wide)
    md = writer("check", "md").render(shareable(result))
    assert "😀" in md and len(md) <= TARGET
    assert len(md.encode("utf-8")) <= JOB_SUMMARY_LIMIT


# --- the action's shell, run for real ------------------------------------------------------------

class Runner:
    """Runs the action's ``run:`` steps by name with bash as a GitHub runner does: the step's
    ``env:`` with its ``${{ }}`` put in (inputs, earlier steps' outputs, the action's path), a
    fresh ``$GITHUB_OUTPUT`` per step, one ``$GITHUB_STEP_SUMMARY`` file, ``bash -e -o
    pipefail``."""

    def __init__(self, tmp: Path, inputs: dict[str, str], path: str | None = None,
                 **env: str) -> None:
        self.action = load(ACTION)
        defaults = {k: v.get("default", "") for k, v in self.action["inputs"].items()}
        self.inputs = {**defaults, **inputs}
        self.tmp, self.outputs, self.summary = tmp, {}, tmp / "summary.md"
        self.workspace = tmp / "workspace"
        self.workspace.mkdir(exist_ok=True)
        self.path = path or f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin"
        self.env = env

    def value(self, expression: str) -> str:
        if expression.startswith("inputs."):
            return self.inputs[expression.removeprefix("inputs.")]
        if expression == "github.action_path":
            return str(ROOT)
        step, _, name = expression.removeprefix("steps.").partition(".outputs.")
        return self.outputs.get(step, {}).get(name, "")

    def run(self, name: str) -> subprocess.CompletedProcess[str]:
        step = steps(self.action)[name]
        output = self.tmp / f"output-{len(list(self.tmp.glob('output-*')))}"
        output.touch()
        env = cli_env(PATH=self.path, RUNNER_TEMP=str(self.tmp / "runner-temp"),
                      GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(self.summary),
                      **self.env)
        for key, value in step.get("env", {}).items():
            env[key] = EXPRESSION.sub(lambda m: self.value(m.group(1)), str(value))
        (self.tmp / "runner-temp").mkdir(exist_ok=True)
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c",
                               step["run"]], cwd=self.workspace, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        lines = output.read_text(encoding="utf-8").splitlines()
        self.outputs[step.get("id", name)] = dict(line.split("=", 1) for line in lines)
        return proc


CHECK, SUMMARY, GATE, INSTALL = ("Check against the golden", "Job summary",
                                 "Gate on the check's exit code", "Install envaudit")


def test_the_action_checks_once_writes_the_summary_and_gates_on_the_exit_code(
        tmp_path, golden_bundle):
    runner = Runner(tmp_path, {"golden": str(golden_bundle), "modes": "eager",
                               "args": "--no-confirm"})
    check = runner.run(CHECK)
    assert check.returncode == 0, check.stderr  # the step hands its code on
    out = runner.outputs["check"]
    assert out["exit-code"] in ("0", "1"), check.stderr
    assert out["verdict"] == ("identical" if out["exit-code"] == "0" else "drift")
    report, markdown, junit = (Path(out[name]) for name in ("report", "markdown", "junit"))
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    suite = ET.parse(junit).getroot()  # the same run's verdict in every report
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert (properties["verdict"], properties["exit_code"]) == (out["verdict"], out["exit-code"])
    summary = runner.run(SUMMARY)
    assert summary.returncode == 0, summary.stderr
    written = runner.summary.read_text(encoding="utf-8")
    assert written == markdown.read_text(encoding="utf-8")
    assert written.startswith("## envaudit check: ") and out["verdict"] in written.split("\n")[0]
    assert f"- exit code: {out['exit-code']}" in written and "### Environment" in written
    assert runner.run(GATE).returncode == int(out["exit-code"])
    # the upload step sends the files the check wrote, whatever the verdict
    upload = steps(runner.action)["Upload the reports"]
    sent = EXPRESSION.sub(lambda m: runner.value(m.group(1)), upload["with"]["path"])
    assert sent.split() == [str(report), str(markdown), str(junit)]
    assert upload["if"].startswith("always()")


def test_a_finding_fails_the_job_only_at_the_last_step(tmp_path):
    runner = Runner(tmp_path, {})
    runner.outputs["check"] = {"exit-code": "1", "verdict": "drift"}
    gate = runner.run(GATE)
    assert gate.returncode == 1 and "envaudit: drift: the numbers moved" in gate.stderr
    assert all(s.get("if") == "always()" for s in runner.action["runs"]["steps"]
               if s["name"] in (SUMMARY, GATE))
    runner.outputs["check"] = {}  # the check never ran (the install failed)
    assert runner.run(GATE).returncode == 2


def no_report_summary(runner: Runner) -> str:
    """The check step, then the summary step; the summary written (the check wrote no report)."""
    check = runner.run(CHECK)
    assert check.returncode == 0, check.stderr
    assert runner.outputs["check"]["exit-code"] == "2"
    assert runner.outputs["check"]["verdict"] == "error"
    assert not Path(runner.outputs["check"]["report"]).exists()
    assert runner.run(SUMMARY).returncode == 0
    assert runner.run(GATE).returncode == 2
    written = runner.summary.read_text(encoding="utf-8")
    assert written.startswith("## envaudit check: no report\n")
    return written


def test_a_missing_golden_is_one_line_in_the_summary_and_exit_2(tmp_path):
    written = no_report_summary(Runner(tmp_path, {"golden": "golden/ci"}))
    assert "    envaudit: error: no golden bundle at 'golden/ci' (the input 'golden')" in written
    assert "actions/checkout with lfs: true" in written


def test_a_corrupt_golden_is_envaudits_own_error_in_the_summary(tmp_path):
    (tmp_path / "workspace" / "golden").mkdir(parents=True)
    (tmp_path / "workspace" / "golden" / "manifest.json").write_text("{}", encoding="utf-8")
    written = no_report_summary(Runner(tmp_path, {"golden": "golden"}))
    assert "    envaudit: error: golden/manifest.json is not an envaudit golden manifest" in written


@pytest.mark.parametrize("inputs, said", [
    ({"args": "$(touch pwned) `touch pwned` ; touch pwned"}, "unexpected argument '$(touch'"),
    ({"modes": "eager;touch pwned"}, "'eager;touch pwned' is not a list of modes"),
    ({"strict": "$(touch pwned)"}, "the input 'strict' is '$(touch pwned)'"),
])
def test_hostile_inputs_are_words_never_code(tmp_path, golden_bundle, inputs, said):
    runner = Runner(tmp_path, {"golden": str(golden_bundle), **inputs})
    written = no_report_summary(runner)
    assert said in written
    assert not list(tmp_path.rglob("pwned"))


def test_a_report_larger_than_a_summary_is_cut_at_a_line_with_its_details_closed(tmp_path):
    report = tmp_path / "report.md"
    rows = "".join(f"| `stage_{i:06d}` | ≈ within rounding ✓ |\n" for i in range(40_000))
    report.write_text(f"## envaudit check: drift\n\n<details><summary>rows</summary>\n\n{rows}",
                      encoding="utf-8")
    assert report.stat().st_size > JOB_SUMMARY_LIMIT
    runner = Runner(tmp_path, {})
    runner.outputs["check"] = {"markdown": str(report)}
    assert runner.run(SUMMARY).returncode == 0
    written = runner.summary.read_bytes()
    assert len(written) <= JOB_SUMMARY_LIMIT
    text = written.decode("utf-8")  # cut at a line: no character split
    assert text.count("<details>") == text.count("</details>") == 1
    assert text.rstrip("\n").splitlines()[-1] == (
        f"_Cut here: the report has {report.stat().st_size} bytes, more than a job summary holds"
        " (1 MiB); the whole report is the artifact of this run._")
    assert re.search(r"\| `stage_\d{6}` \| ≈ within rounding ✓ \|\n\n</details>", text)


def fake_python(tmp_path: Path) -> Path:
    """A folder with a ``python`` that records its arguments, one a line, instead of running
    pip."""
    shims = tmp_path / "shims"
    shims.mkdir()
    python = shims / "python"
    python.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n', encoding="utf-8")
    python.chmod(0o755)
    return shims


@pytest.mark.parametrize("inputs, spec, constraint", [
    ({}, str(ROOT), None),
    ({"extras": "onnx,fleet"}, f"{ROOT}[onnx,fleet]", None),
    ({"install": "envaudit @ file:///opt/envaudit $(touch pwned)", "constraints": "ci/pins.txt"},
     "envaudit @ file:///opt/envaudit $(touch pwned)", "ci/pins.txt"),
])
def test_the_install_step_gives_pip_one_requirement(tmp_path, inputs, spec, constraint):
    runner = Runner(tmp_path, inputs, path=f"{fake_python(tmp_path)}{os.pathsep}/usr/bin:/bin",
                    ARGS_FILE=str(tmp_path / "args"))
    proc = runner.run(INSTALL)
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "args").read_text(encoding="utf-8").splitlines()
    assert argv[:3] == ["-m", "pip", "install"] and argv[-2:] == ["--", spec]
    assert (argv[argv.index("--constraint") + 1] if constraint else None) == constraint
    assert not list(tmp_path.rglob("pwned"))


@pytest.mark.parametrize("inputs, said", [
    ({"install": "none"}, "the input 'install' is 'none' but no envaudit is on PATH"),
    ({"extras": "onnx] @ evil"}, "the input 'extras' is 'onnx] @ evil'"),
])
def test_the_install_step_refuses_in_one_line(tmp_path, inputs, said):
    proc = Runner(tmp_path, inputs, path="/usr/bin:/bin").run(INSTALL)
    assert proc.returncode == 2 and said in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --- one check, several reports (--also) ---------------------------------------------------------

@pytest.mark.parametrize("command", [("check", "--golden", "nowhere"), ("compare", "a", "b")])
@pytest.mark.parametrize("options, said", [
    (("--also", "pdf=r.pdf"), "'pdf=r.pdf' is not FORMAT=FILE with FORMAT one of text, json, md,"
                              " junit, html"),
    (("--also", "html="), "argument --also: is empty"),
    (("-o", "r.md", "--also", "html=./r.md"), "r.md is named twice among -o and --also"),
    (("--also", "md=r.md", "--also", "html=r.md"), "r.md is named twice among -o and --also"),
    (("--also", "md=-"), "--also writes to a file, not to -; -o - (or no -o) is the report on"),
])
def test_also_is_refused_in_one_line_before_anything_runs(command, options, said):
    # before the golden ('nowhere') or the files compared are even looked at
    proc = run_cli(*command, *options)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --- the GitLab template's shell -----------------------------------------------------------------

def run_gitlab(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """The template's script entries in order, each by ``sh -e`` as a GitLab runner runs them,
    in a project folder, with the template's variables (overridden by ``variables``) and a
    ``python`` and an ``envaudit`` that record their arguments."""
    shims = fake_python(tmp_path)
    (shims / "envaudit").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE.envaudit"\n',
                                    encoding="utf-8")
    (shims / "envaudit").chmod(0o755)
    job = load(GITLAB)[".envaudit-check"]
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    env = cli_env(PATH=f"{shims}{os.pathsep}/usr/bin:/bin", ARGS_FILE=str(tmp_path / "args"),
                  **{**job["variables"], **variables})
    for script in job["script"]:
        proc = subprocess.run(["sh", "-e", "-c", script], cwd=project, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode:
            break
    return proc


def test_the_gitlab_job_installs_and_checks_with_each_variable_one_word(tmp_path):
    golden = tmp_path / "project" / "golden ci"
    golden.mkdir(parents=True)
    (golden / "manifest.json").write_text("{}", encoding="utf-8")
    proc = run_gitlab(tmp_path, ENVAUDIT_GOLDEN="golden ci", ENVAUDIT_MODES="eager,graph",
                      ENVAUDIT_STRICT="true", ENVAUDIT_ARGS="--no-confirm  $(touch pwned) *",
                      ENVAUDIT_INSTALL="envaudit @ file:///opt/envaudit",
                      ENVAUDIT_CONSTRAINTS="ci/pins.txt")
    assert proc.returncode == 0, proc.stderr
    pip = (tmp_path / "args").read_text(encoding="utf-8").splitlines()
    assert pip == ["-m", "pip", "install", "--disable-pip-version-check", "--constraint",
                   "ci/pins.txt", "--", "envaudit @ file:///opt/envaudit"]
    check = (tmp_path / "args.envaudit").read_text(encoding="utf-8").splitlines()
    assert check == ["check", "--golden", "golden ci", "--strict", "--modes", "eager,graph",
                     "--no-confirm", "$(touch", "pwned)", "*", "--format", "junit", "-o",
                     "envaudit-junit.xml", "--also", "html=envaudit-report.html", "--also",
                     "md=envaudit-report.md"]
    assert not list(tmp_path.rglob("pwned"))


@pytest.mark.parametrize("variables, said", [
    ({}, "set ENVAUDIT_INSTALL to the pip requirement envaudit is installed from"),
    ({"ENVAUDIT_INSTALL": "none", "ENVAUDIT_GOLDEN": "golden/ci"},
     "no golden bundle at 'golden/ci' (ENVAUDIT_GOLDEN) in the project"),
    ({"ENVAUDIT_INSTALL": "none", "ENVAUDIT_GOLDEN": ".", "ENVAUDIT_STRICT": "yes"},
     "ENVAUDIT_STRICT is 'yes'; use true or false"),
])
def test_the_gitlab_job_refuses_in_one_line_with_exit_2(tmp_path, variables, said):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "manifest.json").write_text("{}", encoding="utf-8")
    proc = run_gitlab(tmp_path, **variables)
    assert proc.returncode == 2 and said in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "args.envaudit").exists()
