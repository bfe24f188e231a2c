"""The GitHub Actions workflows: valid against the workflow schema, and doing what the README says.

actionlint cannot be installed here; ``check-jsonschema`` (pinned in requirements.txt) validates
every workflow against its vendored copy of the GitHub workflow schema, offline. The other tests
read the YAML and check the properties the book relies on: the CPU `tests` workflow installs
like the README and runs the unit tests; the `book` workflow builds the full profile strictly on
the GPU runner, keeps its caches, runs the generated notebooks, uploads the HTML and PDFs,
deploys Pages and the `notebooks` branch from main only, and can be started by hand or weekly.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dlmi_launch import book_settings

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
GPU_LABEL = "gpu"


def load(name: str) -> dict:
    """A workflow as data; PyYAML reads the key ``on`` as ``True``, put back as ``"on"``."""
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def run_lines(job: dict) -> str:
    """All ``run:`` scripts of a job, one after the other."""
    return "\n".join(step.get("run", "") for step in job["steps"])


def step_using(job: dict, action: str) -> list[dict]:
    """The steps of ``job`` that use ``action`` (``owner/name``, any version)."""
    return [step for step in job["steps"] if step.get("uses", "").split("@")[0] == action]


def test_workflows_exist():
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == ["book.yml", "tests.yml"]


def test_workflows_match_the_github_schema():
    """Every workflow validates against check-jsonschema's builtin (vendored, offline) workflow schema."""
    if not CHECK_JSONSCHEMA.exists():
        pytest.skip(f"check-jsonschema is not installed in {CHECK_JSONSCHEMA.parent}: make install")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path):
    """The validation is real: a misspelt key fails it."""
    if not CHECK_JSONSCHEMA.exists():
        pytest.skip(f"check-jsonschema is not installed in {CHECK_JSONSCHEMA.parent}: make install")
    bad = tmp_path / "bad.yml"
    text = (WORKFLOWS / "tests.yml").read_text().replace("runs-on:", "runs_on:", 1)
    bad.write_text(text)
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "runs_on" in result.stdout + result.stderr


def test_every_run_step_fails_on_the_first_error():
    """Every multi-command ``run:`` is bash with ``set -eo pipefail`` (a piped ``tee`` keeps the status)."""
    for name in ("tests.yml", "book.yml"):
        for job_name, job in load(name)["jobs"].items():
            for step in job["steps"]:
                if "run" in step:
                    where = f"{name}: job {job_name}, step {step.get('name')!r}"
                    assert step.get("shell") == "bash", where
                    assert step["run"].lstrip().startswith("set -eo pipefail"), where


def test_tests_workflow_installs_like_the_readme_and_runs_the_unit_tests():
    data = load("tests.yml")
    assert {"push", "pull_request", "workflow_dispatch"} <= set(data["on"])
    (job,) = data["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"  # a CPU runner
    assert step_using(job, "actions/setup-python")[0]["with"]["python-version"] == "3.11"
    script = run_lines(job)
    readme = (REPO / "README.md").read_text()
    assert "make install" in script and "make install" in readme
    assert re.search(r"\.venv/bin/python -m pytest -m \"not built\"", script)
    assert job["env"]["DLMI_PROFILE"] == "quick"


def test_book_workflow_builds_the_full_profile_strictly_on_the_gpu_runner():
    data = load("book.yml")
    job = data["jobs"]["build"]
    labels = job["runs-on"]
    assert "self-hosted" in labels and GPU_LABEL in labels
    readme = (REPO / "README.md").read_text()
    assert f"[self-hosted, linux, x64, {GPU_LABEL}]" in readme, "the README documents the runner's labels"
    assert job["env"]["DLMI_PROFILE"] == "full"
    script = run_lines(job)
    assert "nvidia-smi" in script
    assert "make book" in script
    # make book runs the strict build script: warnings are errors, and so are cell errors (config)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^book:.*\n\ttools/build_book\.sh", makefile, re.M)
    assert " -W " in (REPO / "tools" / "build_book.sh").read_text()
    assert "tools/run_notebooks.py" in script, "every generated notebook runs top to bottom"
    assert "pytest -m built" in script


def test_book_workflow_keeps_its_caches():
    job = load("book.yml")["jobs"]["build"]
    cached = {step["with"]["path"].strip(): step["with"] for step in step_using(job, "actions/cache")}
    assert set(cached) == {"_build/cache", "_build/.jupyter_cache"}
    for options in cached.values():
        assert options["key"] and options["restore-keys"]
    # the jupyter-cache key starts with the package's hash, the key the restore falls back to
    jupyter = cached["_build/.jupyter_cache"]
    assert jupyter["key"].startswith(jupyter["restore-keys"])
    assert "src/dlmi/**" in jupyter["restore-keys"]
    assert job["env"]["DLMI_CACHE_DIR"].endswith("/_build/cache")
    assert "touch _build/.dlmi-source" in run_lines(job)


def test_book_workflow_uploads_html_and_pdfs_and_deploys_from_main_only():
    data = load("book.yml")
    build, deploy = data["jobs"]["build"], data["jobs"]["deploy"]
    uploads = {step["with"]["name"]: step for step in step_using(build, "actions/upload-artifact")}
    assert uploads["book-pdfs"]["with"]["path"].startswith("_build/pdf")
    assert uploads["notebooks"]["with"]["path"] == "_build/html/_notebooks"
    assert step_using(build, "actions/upload-pages-artifact")[0]["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build"
    assert deploy["if"] == "github.ref == 'refs/heads/main'"
    assert step_using(deploy, "actions/deploy-pages")
    assert {"pages", "id-token", "contents"} <= set(deploy["permissions"])
    assert data["permissions"] == {"contents": "read"}  # write access only where it is needed


def test_book_workflow_publishes_the_notebooks_branch_the_colab_links_open():
    deploy = load("book.yml")["jobs"]["deploy"]
    (publish,) = step_using(deploy, "peaceiris/actions-gh-pages")
    config, _ = book_settings(REPO)
    assert publish["with"]["publish_branch"] == config.notebooks_branch
    (download,) = step_using(deploy, "actions/download-artifact")
    assert download["with"]["name"] == "notebooks"
    assert publish["with"]["publish_dir"] == download["with"]["path"]


def test_book_workflow_runs_by_hand_and_weekly():
    on = load("book.yml")["on"]
    assert "workflow_dispatch" in on
    assert on["push"]["branches"] == ["main"]
    (schedule,) = on["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert day == "*" and month == "*" and weekday not in ("*", "") and not minute.startswith("*")
