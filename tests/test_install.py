"""What a user of the installed project relies on before any job runs."""

import subprocess
import sys


def test_our_kernels_package_is_not_mistaken_for_hub_kernels():
    # transformers probes find_spec("kernels") + the distribution version and would route model layers through
    # Hugging Face's hub-kernels library if it believed that library was installed.
    from transformers.utils.import_utils import is_kernels_available

    import kernels

    assert kernels.__file__.endswith("kernels/__init__.py")
    assert not is_kernels_available()


def test_pipeline_starts_without_torch():
    # Data tools must start fast: importing pipeline must not pull in torch.
    code = (
        "import sys, pipeline.stream, pipeline.documents, pipeline.trajectory, pipeline.chunking, "
        "pipeline.readers, pipeline.corpus, pipeline.metrics, pipeline.sources\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_lists_its_jobs_quickly():
    out = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "--help"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    for job in ("generate", "train", "evaluate", "publish", "demo"):
        assert job in out


def test_help_imports_no_job_and_shows_each_jobs_own_first_line():
    # `--help` lists the jobs from jobs.cli alone; each line must stay the job module's own docstring line.
    import importlib

    from jobs.cli import COMMANDS

    probe = ("import sys; from jobs.cli import build_parser; build_parser(); "
             "print(sorted(m for m in sys.modules if m.startswith(('jobs.', 'torch', 'ray', 'vllm')) and m != 'jobs.cli'))")
    imported = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "[]"
    for module_name, help_line in COMMANDS.values():
        assert importlib.import_module(module_name).__doc__.strip().splitlines()[0] == help_line


def test_a_bad_config_is_one_clear_line_not_a_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("parts:\n  - name: rules\n    teacher: {backend: rules}\n    sources: [{kind: files}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "generate", "--config", str(config), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "source kind 'files' is unknown" in done.stderr and "Fix:" in done.stderr
    assert not (tmp_path / "out").exists()
