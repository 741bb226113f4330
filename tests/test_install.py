"""The README from a fresh clone (issue 23, house style 8): every shell command of the README is run as
written, or listed in COMMANDS with the reason it is not; and the wheel the README builds works installed.

How. One fixture, ``clone``, built once for this module, goes through the README as a new developer:

1. It copies the checkout as a clone would hold it: the files git tracks or would track
   (``git ls-files --cached --others --exclude-standard``, as they are in the working tree, so
   uncommitted work is tested too; no .venv, no dist/), into a temporary folder.
2. It runs ``./dev serve`` there (FIRST_SERVE): the first run creates .venv and installs the package.
   Its output lines are timed, /healthz is probed until it answers, the commands marked
   WITH_DEV_SERVE are run against it, then it gets Ctrl-C (SIGINT to its process group).
3. It runs the install block line by line, from the clone, each line in the environment it names,
   put first on PATH (the "current environment" of ``python3 -m pip``): ``pip install .`` and the
   wheel's build into dist/ in the clone's .venv (INSTALL), the wheel and its extras "where it is
   needed": a fresh virtual environment outside the clone (INSTALL_ELSEWHERE). (Installed into the
   clone's .venv, the wheel would be skipped: pip keeps an installed 0.1.0 over a wheel of 0.1.0.)

Every RUN command then runs in the clone, from its root, with ``bash -c``; a WITH_WHEEL command too,
with the wheel's environment in place of .venv (its ``suite`` extra brings pytest, which the clone's
.venv gets only from ``./dev test``). A block whose line ends in ``&`` (SERVE_IN_BACKGROUND) is run by
starting that server, probing /healthz until it answers, running the block's next lines
(WITH_ITS_SERVER), and stopping it. A command passes when it exits 0 (a curl call: when it answers JSON
that is not an HTTP error). Everything runs with private XDG_DATA_HOME and XDG_RUNTIME_DIR (the decision
record and the CDS store are the test's), one worker, and free ports.

What the test changes in a command, and nothing else (``as_run``): the address 127.0.0.1:8000 becomes
a free port's (in the quick start's Python block too), a ``serve`` gets ``--port`` with that port, the
placeholders of PLACEHOLDERS are filled in, and WITH_WHEEL's ``.venv/`` is the wheel's environment.
``$TOKEN`` is the token the quick start prints.

The README's commands are every line of a ```sh block (a line ending in ``\\`` goes on in the next) and
every inline code span that starts like a command (_COMMAND_START; ``triage SUBCOMMAND`` in prose names a
command whose examples are in the blocks). A command the README gains or changes and COMMANDS lacks,
or one COMMANDS lists that the README lost, fails ``test_every_readme_command_is_listed``; a renamed
option or a missing file fails the command's own test. A command that is not run must still name only
files that exist, and a Python script among them must accept, in ``--help``, every option it is given.

Cost: about 35 s for the fixture on 2 cores (most of it pip), a few seconds a command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import venv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CASE = {"patient": {"cancer": {"history": "current", "primary": "prostate"}},
        "presentation": {"weakness": {"present": True, "limbs": "legs", "bilateral": True, "progressive": True}}}

# How each command of the README is run.
FIRST_SERVE = "run first, in the fresh clone, by the clone fixture (test_dev_serve_...)"
WITH_DEV_SERVE = "run by the clone fixture while that first ./dev serve is up"
INSTALL = "run by the clone fixture, in README order, into the clone's .venv"
INSTALL_ELSEWHERE = "run by the clone fixture, in README order, from the clone into a fresh venv outside it"
WITH_WHEEL = "run in the clone with the wheel's environment instead of .venv"
RUN = "run in the clone"
SERVE_IN_BACKGROUND = "started with the rest of its block (test_a_server_block_...), probed, stopped"
WITH_ITS_SERVER = "run while the server its block started is up"


def not_run(reason: str) -> str:
    return f"not run: {reason}"


COMMANDS = {
    # Two commands
    "./dev serve": FIRST_SERVE,
    "./dev test": not_run("the whole test suite, this test included; CI runs it first (.ci/run)"),
    "./dev test -n 0": not_run("the whole test suite again, in one process (pytest's own -n 0); ./dev test runs it"),
    "./dev": not_run("the script's name in prose; its two commands are listed"),
    "scripts/memcheck": not_run("the vignettes replayed under valgrind, minutes; CI runs it (.ci/run)"),
    # Install it
    "python3 -m pip install .": INSTALL,
    "python3 -m pip wheel --no-deps -w dist .": INSTALL,
    'python3 -m pip install "dist/mscc_triage-0.1.0-py3-none-any.whl"': INSTALL_ELSEWHERE,
    'python3 -m pip install "dist/mscc_triage-0.1.0-py3-none-any.whl[suite]"': INSTALL_ELSEWHERE,
    'python3 -m pip install "dist/mscc_triage-0.1.0-py3-none-any.whl[postgres]"': INSTALL_ELSEWHERE,
    # Command line
    ".venv/bin/triage evaluate examples/emergency.json": RUN,
    ".venv/bin/triage evaluate examples/urgent.json": RUN,
    ".venv/bin/triage replay tests/vignettes": RUN,
    ".venv/bin/triage rules check": RUN,
    ".venv/bin/triage rules list": RUN,
    ".venv/bin/triage vocabulary": RUN,
    # How it decides, performance
    "cd rules && LC_ALL=C sha256sum * | sha256sum": RUN,
    ".venv/bin/python benchmarks/core_bench.py": not_run("a benchmark: it measures for 5 s and prints figures"),
    "benchmarks/compare_bench.py COMMIT": not_run("a benchmark against another commit's checkout"),
    "benchmarks/issue26.sh [--impact]": not_run("minutes of benchmarks: wrk, which ./dev does not install, and a "
                                                "checkout of another commit"),
    ".venv/bin/python benchmarks/dense_cases.py --cases 20000 --density 0.8": not_run(
        "20,000 random cases, minutes; tests/test_robustness.py runs such cases"),
    # The HTTP service
    "./dev serve --port 8080": not_run("./dev serve, which is run, with --port set to a free port"),
    ".venv/bin/triage serve": not_run("what ./dev serve ends in (exec), which is run; the quick start's server "
                                      "line runs it too"),
    "curl -s -X POST http://127.0.0.1:8000/v1/triage -H 'Content-Type: application/json' -d '{\"patient\": "
    "{\"cancer\": {\"history\": \"current\"}}, \"presentation\": {\"weakness\": {\"present\": true}}}'": WITH_DEV_SERVE,
    "MSCC_CDS_ISSUERS_FILE=issuers.json .venv/bin/triage serve --public-url http://127.0.0.1:8000/ &":
        SERVE_IN_BACKGROUND,
    "curl -s http://127.0.0.1:8000/cds-services": WITH_ITS_SERVER,
    "curl -s -X POST http://127.0.0.1:8000/cds-services/mscc-triage -H \"Authorization: Bearer $TOKEN\" "
    "-H 'Content-Type: application/json' -d @examples/cds-request.json": WITH_ITS_SERVER,
    "benchmarks/http_bench.sh [SECONDS] [WORKERS] [THREADS]": not_run("a load benchmark with wrk, which ./dev "
                                                                      "does not install"),
    "benchmarks/http_compare.sh [SECONDS] [WORKERS] [THREADS]": not_run("a load benchmark with wrk, which ./dev "
                                                                        "does not install"),
    "benchmarks/minimal_app.py": not_run("the app http_compare.sh compares against, served by gunicorn"),
    "apt-get install -y wrk": not_run("installs a system package: tests run no apt command"),
    # The decision record
    ".venv/bin/triage audit verify": RUN,
    ".venv/bin/triage audit verify --expect-head HASH --expect-count N": RUN,
    ".venv/bin/triage audit show ID": RUN,
    ".venv/bin/triage audit export --since 2026-01-01 > records.jsonl": RUN,
    ".venv/bin/triage audit replay [--ruleset OLD_RULES]": RUN,
    ".venv/bin/triage impact candidate-rules/ [--since DATE]": RUN,
    ".venv/bin/triage audit prune --before 2025-01-01": RUN,
    "benchmarks/impact_bench.py": not_run("builds a record of 1,000,000 decisions (12 GB) and re-triages it: "
                                          "about half an hour"),
    "benchmarks/record_bench.py writes [--evaluate] [--sync]": not_run("a benchmark of record writes by 1, 4 "
                                                                       "and 16 threads on disk and tmpfs, minutes"),
    # Vignette suites
    ".venv/bin/pytest tests/vignettes": WITH_WHEEL,
    ".venv/bin/pytest --ruleset=/path/to/rules tests/vignettes": WITH_WHEEL,
    "pip install": not_run("a word in prose: how to install is the install block"),
}

# The README's placeholders and what the test puts there, in this order ({head} and {count}: what
# `triage audit verify` prints; the record holds the decisions of the first ./dev serve).
PLACEHOLDERS = [
    (r"\[(--[^\]]+)\]", r"\1"),                 # an optional part: given
    (r"\bHASH\b", "{head}"),
    (r"\bN\b", "{count}"),
    (r"\bID\b", "1"),
    (r"\bOLD_RULES\b", "rules"),
    (r"/path/to/rules\b", "rules"),
    (r"\bcandidate-rules/", "rules/"),          # a candidate ruleset: the clone's own
    (r"\bDATE\b", "2026-01-01"),
]

_COMMAND_START = ("./", ".venv/bin/", "cd ", "pip ", "python3 ", "apt-get ", "curl ", "benchmarks/", "scripts/")


def _block_commands(block: str) -> list[str]:
    commands, pending = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
            continue
        command = (pending + line.strip()).split("  #")[0].strip()
        pending = ""
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def readme_blocks() -> list[list[str]]:
    """The commands of each ```sh block of the README, in order."""
    return [_block_commands(block) for block in re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)]


def readme_commands() -> list[str]:
    """Every command of the README, once, in order: the blocks' lines, then the inline ones."""
    prose = re.sub(r"```.*?```", "", README.read_text(encoding="utf-8"), flags=re.S)
    inline = [span for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose) if span.startswith(_COMMAND_START)]
    return list(dict.fromkeys([command for block in readme_blocks() for command in block] + inline))


def _listed(kind: str) -> list[str]:
    return [command for command in readme_commands() if COMMANDS.get(command) == kind]


def _port_of(text: str, port: int) -> str:
    return text.replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def as_run(command: str, port: int, clone: Clone | None = None) -> str:
    """The command as the test runs it: the README's, with a free port and the placeholders filled in."""
    command = re.sub(r"\bserve\b(?! --port)", f"serve --port {port}", _port_of(command, port))
    values = {"head": "HASH", "count": "N"}
    if clone is not None and re.search(r"\bHASH\b|\bN\b", command):
        verify = _run(".venv/bin/triage audit verify", clone.path, clone.env)
        head, count = re.search(r"--expect-head (\w+) --expect-count (\d+)", verify.stdout).groups()
        values = {"head": head, "count": count}
    for pattern, value in PLACEHOLDERS:
        command = re.sub(pattern, value.format(**values), command)
    return command


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _check(command: str, done: subprocess.CompletedProcess | None) -> None:
    assert done is not None, f"{command}: not run (see the clone fixture's failure above)"
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if command.startswith("curl"):
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            pytest.fail(f"{command}\nanswered no JSON:\n{done.stdout[:2000]}")
        status = answer.get("status") if isinstance(answer, dict) else None
        assert not (isinstance(status, int) and status >= 400), f"{command}\n{done.stdout[:2000]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(port: int, proc: subprocess.Popen, seconds: float) -> int | None:
    """/healthz's HTTP status once the server answers; None if it stopped or did not answer in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                return answer.status
        except urllib.error.HTTPError as err:
            err.close()
            return err.code
        except OSError:
            time.sleep(0.2)
    return None


def _stop(proc: subprocess.Popen) -> int | None:
    """Ctrl-C: SIGINT to the server's process group. Its exit status, or None if it had to be killed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            return None
    return proc.returncode


def _copy_checkout(target: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and (source.is_file() or source.is_symlink()):      # not a file deleted in the working tree
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)


@dataclass
class Clone:
    path: Path                                   # the fresh clone; its .venv made by ./dev serve
    wheel_venv: Path                             # where the wheel was installed, outside the clone
    env: dict[str, str]                          # a developer's environment, with private data folders
    data: Path                                   # its XDG_DATA_HOME
    serve_lines: list[tuple[float, str]] = field(default_factory=list)   # ./dev serve's output, timed
    serve_health: int | None = None              # /healthz's status once it answered
    serve_exit: int | None = None                # its exit status after Ctrl-C
    served: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    installed: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    base = tmp_path_factory.mktemp("clone")
    path = base / "mscc-triage"
    _copy_checkout(path)
    data, run = base / "data", base / "run"
    for folder in (data, run):
        folder.mkdir(mode=0o700)
    # A new developer's shell: not this test run's virtual environment, none of its settings.
    ours = Path(sys.executable).parent.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSCC_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != ours)
    env.update(XDG_DATA_HOME=str(data), XDG_RUNTIME_DIR=str(run), MSCC_WORKERS="1")
    clone = Clone(path, base / "wheel-venv", env, data)

    if _run('python3 -c "import venv, ensurepip"', path, env).returncode != 0:
        pytest.fail("python3 lacks venv or ensurepip: ./dev would install python3-venv with apt-get, which no test does")
    port = _free_port()
    started = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", as_run("./dev serve", port)], cwd=path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def read() -> None:
        for line in proc.stdout:
            clone.serve_lines.append((time.monotonic() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        clone.serve_health = _wait_up(port, proc, 600)       # the first run installs first
        if clone.serve_health is not None:
            for command in _listed(WITH_DEV_SERVE):
                clone.served[command] = _run(as_run(command, port), path, env)
    finally:
        clone.serve_exit = _stop(proc)
        reader.join(timeout=10)
        proc.stdout.close()

    venv.EnvBuilder(with_pip=True).create(clone.wheel_venv)
    for command in readme_commands():
        where = {INSTALL: path / ".venv", INSTALL_ELSEWHERE: clone.wheel_venv}.get(COMMANDS.get(command, ""))
        active = dict(env, PATH=f"{where / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(where)) if where else {}
        if where and shutil.which("python3", path=active["PATH"]) == str(where / "bin" / "python3"):  # never elsewhere
            clone.installed[command] = _run(as_run(command, port), path, active)
    yield clone
    shutil.rmtree(base, ignore_errors=True)


def test_every_readme_command_is_listed():
    commands = readme_commands()
    missing = [command for command in commands if command not in COMMANDS]
    gone = [command for command in COMMANDS if command not in commands]
    assert not missing, "README commands this test does not know (add each to COMMANDS, run or with why not):\n" + \
        "\n".join(missing)
    assert not gone, "COMMANDS lists commands the README no longer has:\n" + "\n".join(gone)


def test_dev_serve_says_what_it_does_within_2_seconds_and_is_up(clone):
    """Issue 23: the first ./dev serve was silent for 30 s; now it says each step at once, and serves."""
    text = "\n".join(line for _, line in clone.serve_lines)
    assert clone.serve_lines, "./dev serve printed nothing"
    seconds, first = clone.serve_lines[0]
    assert seconds <= 2.0 and first.startswith("==> "), f"first line after {seconds:.1f} s: {first}"
    for step in ("creating the virtual environment .venv", "installing mscc-triage into .venv", "starting the server"):
        assert step in text, text
    assert clone.serve_health == 200, text
    assert clone.serve_exit == 0 and "Traceback" not in text, f"exit {clone.serve_exit} after Ctrl-C\n{text}"
    assert (clone.data / "mscc-triage" / "records.sqlite3").is_file()    # its record is the private one


@pytest.mark.parametrize("command", _listed(WITH_DEV_SERVE))
def test_a_command_against_dev_serve_runs_as_written(clone, command):
    _check(command, clone.served.get(command))


@pytest.mark.parametrize("command", _listed(INSTALL) + _listed(INSTALL_ELSEWHERE))
def test_an_install_command_runs_as_written(clone, command):
    _check(command, clone.installed.get(command))


@pytest.mark.parametrize("command", _listed(RUN) + _listed(WITH_WHEEL))
def test_a_readme_command_runs_as_written(clone, command):
    line = as_run(command, _free_port(), clone)
    if COMMANDS[command] == WITH_WHEEL:
        line = line.replace(".venv/", f"{clone.wheel_venv}/")
    done = _run(line, clone.path, clone.env)
    _check(command, done)
    if command.startswith("cd rules"):            # the ruleset's sha256, reproduced by hand
        import triage
        assert done.stdout.split()[0] == triage.load_ruleset(clone.path / "rules").sha256


@pytest.mark.parametrize("command", _listed(SERVE_IN_BACKGROUND))
def test_a_server_block_runs_as_written(clone, command):
    block = next(block for block in readme_blocks() if command in block)
    following = block[block.index(command) + 1:]
    assert following and all(COMMANDS[line] == WITH_ITS_SERVER for line in following), block
    port = _free_port()
    # The quick start's Python block comes first: it writes issuers.json here and prints $TOKEN.
    readme = README.read_text(encoding="utf-8")
    quick_start = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if b.startswith("# quick-start"))
    made = subprocess.run([str(clone.path / ".venv" / "bin" / "python"), "-c", _port_of(quick_start, port)],
                          cwd=clone.path, env=clone.env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    env = dict(clone.env, TOKEN=made.stdout.strip())
    with open(clone.path.parent / f"server-{port}.log", "w+") as log:
        proc = subprocess.Popen(["bash", "-c", as_run(command.removesuffix("&").strip(), port)], cwd=clone.path,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            assert _wait_up(port, proc, 60) == 200, Path(log.name).read_text()
            for line in following:
                _check(line, _run(as_run(line, port), clone.path, env))
        finally:
            stopped = _stop(proc)
        assert stopped == 0, Path(log.name).read_text()


@pytest.mark.parametrize("command", [c for c in readme_commands() if COMMANDS.get(c, "").startswith("not run")])
def test_a_command_not_run_names_only_what_exists(clone, command):
    words = shlex.split(command)
    paths = [w for w in words if "/" in w and not w.startswith(("-", "/", "..", "[")) and "://" not in w]
    missing = [p for p in paths if not (clone.path / p).exists()]
    assert not missing, f"{command}: no such file in a clone: {missing}"
    script = next((w for w in words if w.endswith(".py")), None)
    if script:
        helped = subprocess.run([str(clone.path / ".venv" / "bin" / "python"), script, "--help"], cwd=clone.path,
                                env=clone.env, capture_output=True, text=True, timeout=120)
        assert helped.returncode == 0, helped.stderr
        unknown = [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in helped.stdout]
        assert not unknown, f"{command}: {script} has no option {unknown}"


# The wheel the README's install block built and installed, used from another folder.

@pytest.fixture(scope="module")
def installed(clone, tmp_path_factory) -> tuple[Path, Path]:
    """(the bin folder of the venv the wheel was installed into, and a working folder outside the clone)."""
    return clone.wheel_venv / "bin", tmp_path_factory.mktemp("elsewhere")


def test_the_wheel_carries_the_rules_form_texts_and_labels(clone):
    wheel = next((clone.path / "dist").glob("mscc_triage-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in [p.name for p in (ROOT / "rules").iterdir() if p.is_file()]:
        assert f"triage/rules/{name}" in names
    assert "mscc_triage_api/templates/triage_form.html" in names and "mscc_triage_api/fhir/codemap.yaml" in names
    assert not any(n.startswith("api/") for n in names)   # no top-level package named 'api'
    edge = ROOT / "api"   # every module of the service, its rooms (fhir/, cds/) included
    missing = [str(p.relative_to(edge)) for p in edge.rglob("*.py") if "__pycache__" not in p.parts
               and f"mscc_triage_api/{p.relative_to(edge).as_posix()}" not in names]
    assert not missing, missing
    assert any(n.endswith("licenses/LICENSE") for n in names)


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSCC_", "PYTHON"))}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)


def test_evaluate_and_rules_check_from_another_folder(installed):
    bin_dir, work = installed
    (work / "case.json").write_text(json.dumps(CASE))
    out = run([str(bin_dir / "triage"), "evaluate", "case.json"], cwd=work)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["urgency"] == "emergency" and result["ruleset"]["version"] == "2.2.0"
    import triage  # the installed copy hashes the same rule bytes as the checkout
    assert result["ruleset"]["sha256"] == triage.load_ruleset(ROOT / "rules").sha256
    check = run([str(bin_dir / "triage"), "rules", "check"], cwd=work)
    assert check.returncode == 0 and check.stdout.rstrip().endswith("ok"), check.stderr
    assert "site-packages/triage/rules" in check.stdout


def test_the_readme_python_example_runs_installed(installed):
    bin_dir, work = installed
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    out = run([str(bin_dir / "python"), "-c", example], cwd=work)
    assert out.returncode == 0, out.stderr
    assert "emergency" in out.stdout and "dexamethasone_16mg" in out.stdout


def test_serve_answers_the_api_and_cds_hooks_installed(installed, tmp_path):
    bin_dir, work = installed
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSCC_", "PYTHON"))}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    env["MSCC_RECORD_PATH"] = str(tmp_path / "records.sqlite3")
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([str(bin_dir / "triage"), "serve", "--port", str(port), "--workers", "1",
                             "--allow-unauthenticated-cds"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        request = urllib.request.Request(url + "/v1/triage", data=json.dumps(CASE).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["urgency"] == "emergency"
        body = {"hook": "patient-view", "hookInstance": "d1eec3d6-1a3a-4c3e-a6b0-0b1a8b1d2f11",
                "context": {"userId": "Practitioner/1", "patientId": "1"},
                "prefetch": {"patient": {"resourceType": "Patient", "id": "1", "birthDate": "1950-01-01"},
                             "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
                             "observations": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}
        request = urllib.request.Request(url + "/cds-services/mscc-triage", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["cards"][0]["indicator"] in ("info", "warning", "critical")
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert b"<form" in response.read()
        with urllib.request.urlopen(url + "/docs/case-format.md", timeout=10) as response:
            assert b"presentation.weakness.present" in response.read()
        assert "development mode" in (tmp_path / "serve.log").read_text()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        log.close()
