#!/usr/bin/env python3
"""Runs a GitHub Actions workflow file on this machine, the way a runner would.

No registry is reachable here, so `act` and its runner images are out. This runner reads the
workflow, orders its jobs by `needs`, expands each job's matrix, and runs every step in order:
`run:` steps verbatim (bash -eo pipefail, the workflow's, job's and step's `env`, `${{ }}`
expressions, `if:` conditions, `timeout-minutes`), and the few `uses:` actions the workflows
name through local equivalents (below). An action it does not know stops the job: it is never
skipped as if it had passed.

    python3 ci/workflow.py [.github/workflows/nightly.yml] [--job J] [--matrix k=v ...] [--env K=V ...] [--list]

Each job runs in a fresh clone of this repository's HEAD, as a runner checks it out. What a
run leaves is in target/workflow/<run id>/: each step's log, the artifacts, and `summary.txt`.
Exit status: 0 only if every job that ran succeeded.

Local equivalents of actions:
  actions/checkout            the job's workspace is already a fresh clone of HEAD
  dtolnay/rust-toolchain      checks that `rustc` is the version asked for
  taiki-e/install-action      checks the tool is installed, else `cargo install --locked` it
  Swatinem/rust-cache         the workspace's target/ is one directory kept across jobs and runs
  actions/cache[/restore|/save]  a directory per key under target/workflow/cache
  actions/upload-artifact     copies the paths into the run's artifacts/<name>/
  actions/download-artifact   copies every artifact of the run into `path`/<name>/
"""

import argparse
import glob
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.path.join(ROOT, "target", "workflow")


class WorkflowError(Exception):
    """A workflow this runner cannot run as written: said with where and what to do."""


def die(msg):
    print(f"ci/workflow.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- expressions: the subset the workflows use, refused loudly beyond it ----

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
    r"|(?P<name>[A-Za-z_][\w.-]*))"
)


class Expr:
    def __init__(self, ctx, status):
        self.ctx, self.status = ctx, status

    def value(self, path):
        node = self.ctx
        for part in path.split("."):
            if not isinstance(node, dict):
                return ""
            node = node.get(part, "")
        return node

    def call(self, name, args):
        if name == "always":
            return True
        if name == "success":
            return self.status == "success"
        if name == "failure":
            return self.status == "failure"
        if name == "cancelled":
            return False
        if name == "hashFiles":
            h = hashlib.sha256()
            ws = self.ctx["github"]["workspace"]
            for pattern in args:
                for f in sorted(glob.glob(os.path.join(ws, pattern), recursive=True)):
                    if os.path.isfile(f):
                        h.update(open(f, "rb").read())
            return h.hexdigest()
        raise WorkflowError(f"expression function {name}() is not supported by this runner")

    def eval(self, text):
        tokens = []
        pos = 0
        while pos < len(text):
            m = TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise WorkflowError(f"cannot read the expression `{text}` at `{text[pos:]}`")
            tokens.append((m.lastgroup, m.group(m.lastgroup)))
            pos = m.end()
        self.tokens, self.i = tokens, 0
        v = self.or_()
        if self.i != len(tokens):
            raise WorkflowError(f"cannot read the expression `{text}`")
        return v

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def or_(self):
        v = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            r = self.and_()
            v = v or r
        return v

    def and_(self):
        v = self.cmp()
        while self.peek() == ("op", "&&"):
            self.take()
            r = self.cmp()
            v = v and r
        return v

    def cmp(self):
        v = self.unary()
        while self.peek() in (("op", "=="), ("op", "!=")):
            op = self.take()[1]
            r = self.unary()
            same = str(v).lower() == str(r).lower()
            v = same if op == "==" else not same
        return v

    def unary(self):
        if self.peek() == ("op", "!"):
            self.take()
            return not self.unary()
        kind, tok = self.take()
        if kind == "num":
            return float(tok) if "." in tok else int(tok)
        if kind == "str":
            return tok[1:-1].replace("''", "'")
        if kind == "op" and tok == "(":
            v = self.or_()
            self.take()
            return v
        if kind == "name":
            if self.peek() == ("op", "("):
                self.take()
                args = []
                while self.peek() != ("op", ")"):
                    args.append(self.or_())
                    if self.peek() == ("op", ","):
                        self.take()
                self.take()
                return self.call(tok, args)
            if tok in ("true", "false"):
                return tok == "true"
            return self.value(tok)
        raise WorkflowError(f"unexpected `{tok}` in an expression")


def expand(value, ctx, status="success"):
    """Substitutes every ${{ }} in a string (recursively in lists and maps)."""
    if isinstance(value, str):
        return EXPR.sub(lambda m: str(Expr(ctx, status).eval(m.group(1))), value)
    if isinstance(value, list):
        return [expand(v, ctx, status) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, ctx, status) for k, v in value.items()}
    return value


def condition(text, ctx, status):
    """A step's or job's `if:`; with no status function in it, success() is implied."""
    if text is None:
        return status == "success"
    text = str(text)
    m = EXPR.fullmatch(text.strip())
    text = m.group(1) if m else text
    if not re.search(r"\b(always|success|failure|cancelled)\(", text):
        text = f"success() && ({text})"
    return bool(Expr(ctx, status).eval(text))


# ---- the local equivalents of actions ----


def paths_of(spec):
    return [p.strip() for p in str(spec).splitlines() if p.strip()]


def copy_into(src, dest):
    if os.path.isdir(src):
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(src, dest)


class Job:
    def __init__(self, run, name, spec, matrix):
        self.run, self.name, self.spec, self.matrix = run, name, spec, matrix
        label = name + "".join(f"-{k}{v}" for k, v in matrix.items())
        self.label = label
        self.workspace = os.path.join(run.dir, "work", label)
        self.logs = os.path.join(run.dir, "logs", label)
        self.post = []  # steps an action registers for the job's end (cache saves)
        self.extra_path = []

    def ctx(self, env):
        return {
            "matrix": self.matrix,
            "env": env,
            "github": {"workspace": self.workspace, "run_id": self.run.id, "event_name": "workflow_dispatch"},
            "runner": {"os": "Linux", "temp": tempfile.gettempdir()},
            "secrets": {},
        }

    def action(self, uses, with_, env):
        name = uses.split("@")[0]
        if name == "actions/checkout":
            return f"workspace {self.workspace} (fresh clone of {self.run.head[:12]})"
        if name == "dtolnay/rust-toolchain":
            want = str(with_.get("toolchain", "stable"))
            have = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout
            if want not in ("stable",) and not have.startswith(f"rustc {want}"):
                raise WorkflowError(f"the workflow asks for Rust {want}; this machine has {have.strip()}: install it with rustup")
            return have.strip()
        if name == "taiki-e/install-action":
            for tool in paths_of(str(with_.get("tool", "")).replace(",", "\n")):
                sub = tool.removeprefix("cargo-")
                if subprocess.run(["cargo", sub, "--version"], capture_output=True).returncode != 0:
                    subprocess.run(["cargo", "install", "--locked", tool], check=True)
            return f"installed: {with_.get('tool')}"
        if name == "Swatinem/rust-cache":
            # One target/ for every job of every local run: what the cache restores on GitHub.
            shared = os.path.join(STATE, "cargo-target")
            os.makedirs(shared, exist_ok=True)
            target = os.path.join(self.workspace, "target")
            if not os.path.lexists(target):
                os.symlink(shared, target)
            return f"target/ is {shared}"
        if name in ("actions/cache", "actions/cache/restore"):
            key = str(with_["key"])
            paths = paths_of(with_["path"])
            hit = self.run.cache_lookup(key, paths_of(with_.get("restore-keys", "")))
            if hit:
                for p in paths:
                    src = os.path.join(hit, self.cache_slot(p))
                    if os.path.exists(src):
                        copy_into(src, self.abs(p))
            if name == "actions/cache":
                self.post.append(("cache save " + key, lambda: self.cache_save(key, paths)))
            return f"cache {key}: " + (f"restored from {os.path.basename(hit)}" if hit else "miss")
        if name == "actions/cache/save":
            self.cache_save(str(with_["key"]), paths_of(with_["path"]))
            return f"cache {with_['key']}: saved"
        if name == "actions/upload-artifact":
            dest = os.path.join(self.run.dir, "artifacts", str(with_["name"]))
            found = 0
            for p in paths_of(with_["path"]):
                for src in glob.glob(self.abs(p), recursive=True):
                    copy_into(src, os.path.join(dest, os.path.relpath(src, self.workspace)))
                    found += 1
            if not found and with_.get("if-no-files-found", "warn") == "error":
                raise WorkflowError(f"upload-artifact {with_['name']}: no files at {with_['path']}")
            return f"artifact {with_['name']}: {found} path(s)"
        if name == "actions/download-artifact":
            into = self.abs(str(with_.get("path", ".")))
            arts = os.path.join(self.run.dir, "artifacts")
            names = sorted(os.listdir(arts)) if os.path.isdir(arts) else []
            for n in names:
                copy_into(os.path.join(arts, n), os.path.join(into, n))
            return f"downloaded {len(names)} artifact(s) into {into}"
        raise WorkflowError(f"action {uses} has no local equivalent in ci/workflow.py: add one, or make the step a `run:`")

    def abs(self, p):
        p = os.path.expanduser(p)
        return p if os.path.isabs(p) else os.path.join(self.workspace, p)

    @staticmethod
    def cache_slot(path):
        return hashlib.sha256(path.encode()).hexdigest()[:16]

    def cache_save(self, key, paths):
        slot = os.path.join(STATE, "cache", re.sub(r"[^\w.-]", "_", key))
        if os.path.exists(slot):
            return  # a key, once saved, is immutable, as on GitHub
        for p in paths:
            if os.path.exists(self.abs(p)):
                copy_into(self.abs(p), os.path.join(slot, self.cache_slot(p)))
        os.makedirs(slot, exist_ok=True)

    def shell(self, script, env, workdir, timeout, log):
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
            f.write(script)
        try:
            with open(log, "w") as out:
                p = subprocess.Popen(
                    ["bash", "--noprofile", "--norc", "-eo", "pipefail", f.name],
                    cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

                def pump():
                    for line in p.stdout:
                        line = line.decode(errors="replace")
                        sys.stdout.write(f"  | {line}")
                        out.write(line)

                reader = threading.Thread(target=pump, daemon=True)
                reader.start()
                try:
                    code = p.wait(timeout=max(1, timeout))
                except subprocess.TimeoutExpired:
                    # As a runner does: the whole process group goes, not just bash.
                    os.killpg(p.pid, 15)
                    p.wait()
                    raise WorkflowError("the job's timeout-minutes ran out in this step")
                reader.join(timeout=5)
                return code
        finally:
            os.unlink(f.name)

    def execute(self, workflow_env):
        os.makedirs(self.logs, exist_ok=True)
        if os.path.exists(self.workspace):
            shutil.rmtree(self.workspace)
        subprocess.run(["git", "clone", "-q", ROOT, self.workspace], check=True)
        subprocess.run(["git", "-C", self.workspace, "checkout", "-q", self.run.head], check=True)
        sudo_shim(self.run.dir, self.extra_path)
        started = time.monotonic()
        limit = 60 * float(self.spec.get("timeout-minutes", 360))
        status = "success"
        env = dict(workflow_env)
        env.update(expand(self.spec.get("env", {}), self.ctx(env)))
        results = []
        for i, step in enumerate(self.spec.get("steps", []), 1):
            title = step.get("name") or step.get("uses") or step.get("run", "").splitlines()[0]
            ctx = self.ctx(env)
            if not condition(step.get("if"), ctx, status):
                results.append((title, "skipped", 0.0))
                print(f"--- {self.label} · step {i}: {title}: skipped (if: {step.get('if', 'success()')})")
                continue
            print(f"--- {self.label} · step {i}: {title}")
            t0 = time.monotonic()
            outcome = "success"
            try:
                step_env = dict(env)
                step_env.update(expand(step.get("env", {}), ctx))
                if "run" in step:
                    script = expand(step["run"], self.ctx(step_env))
                    proc_env = dict(os.environ)
                    proc_env.update({k: str(v) for k, v in step_env.items()})
                    proc_env.update(CI="true", GITHUB_WORKSPACE=self.workspace, GITHUB_RUN_ID=self.run.id)
                    proc_env["PATH"] = os.pathsep.join(self.extra_path + [proc_env.get("PATH", "")])
                    workdir = self.abs(step.get("working-directory", "."))
                    left = limit - (time.monotonic() - started)
                    code = self.shell(script, proc_env, workdir, left, os.path.join(self.logs, f"{i:02}.log"))
                    if code != 0:
                        outcome = "failure"
                        print(f"  exit {code}")
                elif "uses" in step:
                    print(f"  {self.action(step['uses'], expand(step.get('with', {}), ctx), step_env)}")
                else:
                    raise WorkflowError(f"step {i} of job {self.name} has neither `run` nor `uses`")
            except (WorkflowError, subprocess.CalledProcessError, KeyError) as e:
                outcome = "failure"
                print(f"  error: {e}")
            took = time.monotonic() - t0
            results.append((title, outcome, took))
            print(f"  {outcome} in {took:.0f} s")
            if outcome == "failure":
                status = "failure"
        if status == "success":
            for title, save in self.post:
                save()
                results.append((f"post: {title}", "success", 0.0))
        return status, results, time.monotonic() - started


def sudo_shim(run_dir, extra_path):
    """As root with no sudo (a container, this CI machine), `sudo -E env …` runs the command."""
    if os.geteuid() != 0 or shutil.which("sudo"):
        return
    bindir = os.path.join(run_dir, "bin")
    os.makedirs(bindir, exist_ok=True)
    shim = os.path.join(bindir, "sudo")
    with open(shim, "w") as f:
        f.write('#!/bin/sh\n# root already: drop sudo\'s own options, run the command\n'
                'while [ $# -gt 0 ]; do case "$1" in -E|-H|-n|--preserve-env) shift ;; *) break ;; esac; done\n'
                'exec "$@"\n')
    os.chmod(shim, 0o755)
    if bindir not in extra_path:
        extra_path.insert(0, bindir)


class Run:
    def __init__(self):
        self.head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        self.id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"
        self.dir = os.path.join(STATE, self.id)

    def cache_lookup(self, key, restore_keys):
        base = os.path.join(STATE, "cache")
        slots = sorted(os.listdir(base), key=lambda n: os.path.getmtime(os.path.join(base, n))) if os.path.isdir(base) else []
        exact = re.sub(r"[^\w.-]", "_", key)
        if exact in slots:
            return os.path.join(base, exact)
        for prefix in restore_keys:
            prefix = re.sub(r"[^\w.-]", "_", prefix)
            hits = [s for s in slots if s.startswith(prefix)]
            if hits:
                return os.path.join(base, hits[-1])
        return None


def job_order(jobs):
    order, seen = [], set()

    def visit(name, chain):
        if name in seen:
            return
        if name in chain:
            raise WorkflowError(f"jobs need each other in a circle: {' -> '.join(chain + [name])}")
        if name not in jobs:
            raise WorkflowError(f"a job needs `{name}`, which the workflow does not define")
        needs = jobs[name].get("needs", [])
        for n in [needs] if isinstance(needs, str) else needs:
            visit(n, chain + [name])
        seen.add(name)
        order.append(name)

    for name in jobs:
        visit(name, [])
    return order


def matrices(spec, only):
    matrix = (spec.get("strategy") or {}).get("matrix") or {}
    unknown = set(matrix) & {"include", "exclude"}
    if unknown:
        raise WorkflowError(f"matrix {', '.join(sorted(unknown))} is not supported by this runner")
    keys = list(matrix)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(matrix[k] for k in keys))] or [{}]
    return [c for c in combos if all(str(c[k]) in vs for k, vs in only.items() if k in c)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workflow", nargs="?", default=".github/workflows/nightly.yml")
    ap.add_argument("--job", action="append", default=[], help="run only these jobs (the rest are not run)")
    ap.add_argument("--matrix", action="append", default=[], metavar="KEY=VALUE", help="run only these matrix entries (repeat a key for several)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set or override a workflow-level env value")
    ap.add_argument("--list", action="store_true", help="print the jobs and steps it would run, run nothing")
    args = ap.parse_args()
    path = os.path.join(ROOT, args.workflow) if not os.path.isabs(args.workflow) else args.workflow
    try:
        text = open(path).read()
    except OSError as e:
        die(f"cannot read {args.workflow}: {e.strerror}")
    try:
        wf = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{args.workflow}:{mark.line + 1}:{mark.column + 1}" if mark else args.workflow
        die(f"{where}: not valid YAML: {getattr(e, 'problem', e)}")
    only = {}
    for m in args.matrix:
        k, _, v = m.partition("=")
        only.setdefault(k, set()).add(v)
    try:
        jobs = wf.get("jobs") or {}
        order = [j for j in job_order(jobs) if not args.job or j in args.job]
        run = Run()
        plan = [(name, m) for name in order for m in matrices(jobs[name], only)]
        if args.list:
            for name, m in plan:
                print(f"{name} {m or ''}")
                for s in jobs[name].get("steps", []):
                    print(f"  - {s.get('name') or s.get('uses') or s.get('run', '').splitlines()[0]}")
            return 0
        os.makedirs(run.dir, exist_ok=True)
        print(f"workflow {wf.get('name', args.workflow)} at {run.head[:12]}: {len(plan)} job(s); run directory {run.dir}")
        summary, failed = [], False
        workflow_env = {k: str(v) for k, v in (wf.get("env") or {}).items()}
        workflow_env.update(e.split("=", 1) for e in args.env)
        results_by_job = {}
        for name, m in plan:
            needs = jobs[name].get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            status = "success" if all(results_by_job.get(n, "success") == "success" for n in needs) else "failure"
            job = Job(run, name, jobs[name], m)
            if not condition(jobs[name].get("if"), job.ctx(workflow_env), status):
                summary.append(f"{job.label}: skipped")
                continue
            outcome, steps, took = job.execute(workflow_env)
            if results_by_job.get(name) != "failure":
                results_by_job[name] = outcome
            failed |= outcome != "success"
            summary.append(f"{job.label}: {outcome} in {took / 60:.1f} min")
            summary += [f"  {o:<8} {t:7.0f} s  {title}" for title, o, t in steps]
    except WorkflowError as e:
        die(f"{args.workflow}: {e}")
    text = "\n".join(summary)
    open(os.path.join(run.dir, "summary.txt"), "w").write(text + "\n")
    print("\n" + text)
    print(f"\n{'FAILED' if failed else 'OK'}: {run.dir}/summary.txt")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
