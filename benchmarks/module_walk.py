"""How often a run through ``viewgp interpolate`` moves between the project's modules.

Renders a short run of the demo's scene (``--frames`` frames at ``--size`` px into ``run.mp4`` + TUM
``poses.txt``, as ``benchmarks/pipeline.py --frames N`` does), then runs
``viewgp interpolate --video run.mp4 --poses poses.txt --keyframes every:10 --out OUT`` in a child
process under a profiler, follows it from the command's function
(``sequences.cli.pipeline.run_interpolate``, once the options are parsed) to its return, and prints the
modules it passes through, in order, and the counts:

* a *visit* is a stay in one module: the walk moves to another module when a function of the project
  (``viewgp/``, ``generative/``, ``sequences/``) calls a function of another module, and back when that
  function returns; consecutive stays in one module are one visit;
* each call site is walked once (a call from the same line to the same function again, in a loop over
  frames or chunks, is not walked again), and what a ``viewgp`` or ``generative`` function calls is
  folded into the visit that entered it (the walk follows the run through ``sequences``, the layer
  that holds it, and names each lower module it enters); imports are left out, and only the main thread
  is followed (the scoring's worker threads are not);
* a *return* is a visit to a module that the walk had already left: visits - modules.

``--tree DIR`` walks another checkout (an older commit, say, ``git worktree add /tmp/old COMMIT``);
the run is rendered by this checkout's code either way, so both walk the same input.

    .venv/bin/python benchmarks/module_walk.py                      # this checkout, 30 frames at 128 px
    .venv/bin/python benchmarks/module_walk.py --tree /tmp/old      # the same run through an older tree
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
PACKAGES = ("viewgp", "generative", "sequences")
FOLDED = ("viewgp/", "generative/")
#: where the walk starts: the function that ``viewgp interpolate`` is dispatched to, once its options are parsed
START = ("sequences/cli/pipeline.py", "run_interpolate")
OUTSIDE = ("", False)


def walk(tree: Path, argv: list[str]) -> list[str]:
    """The modules (paths relative to ``tree``) that ``viewgp ARGV`` passes through."""
    root = str(tree) + os.sep
    modules: dict[str, str | None] = {}

    def module_of(filename: str) -> str | None:
        if filename not in modules:
            rel = filename[len(root):] if filename.startswith(root) else None
            modules[filename] = rel if rel and rel.split(os.sep)[0] in PACKAGES else None
        return modules[filename]

    seen: set = set()
    route: list[str] = []
    # one entry per live frame: (the module the walk is in there, whether the frame is the project's own
    # and walked); None below a folded or repeated call, where nothing is walked
    stack: list = []

    def profile(frame, event, arg):
        if event == "call":
            code = frame.f_code
            mod = module_of(code.co_filename)
            top = stack[-1] if stack else OUTSIDE
            if top is OUTSIDE:  # not yet in the command: the walk starts where it is dispatched
                if code.co_name == START[1] and mod == START[0]:
                    stack.append((mod, True))
                    route.append(mod)
                else:
                    stack.append(OUTSIDE)
                return
            if top is None or mod is None:  # inside a skipped call, or a library's frame
                stack.append(top and (top[0], False))
                return
            if code.co_name == "<module>" or top[0].startswith(FOLDED):  # an import, or below viewgp / generative
                stack.append(None)
                return
            caller = frame.f_back
            while caller is not None and module_of(caller.f_code.co_filename) is None:
                caller = caller.f_back
            site = (caller.f_code.co_filename, caller.f_lineno, code) if caller is not None else code
            if site in seen:
                stack.append(None)
                return
            seen.add(site)
            stack.append((mod, True))
            route.append(mod)
        elif event == "return" and stack:
            left = stack.pop()
            back = stack[-1] if stack else None
            if left is not None and left[1] and back is not None and back[0]:
                route.append(back[0])

    sys.path.insert(0, str(tree))
    import sequences.cli

    if not sequences.cli.__file__.startswith(root):
        sys.exit(f"sequences.cli was imported from {sequences.cli.__file__}, not from {tree}")
    sys.setprofile(profile)
    try:
        code = sequences.cli.main(argv)
    finally:
        sys.setprofile(None)
    if code:
        sys.exit(f"viewgp {' '.join(argv)} exited with {code}")
    return [m for i, m in enumerate(route) if i == 0 or m != route[i - 1]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", default=str(HERE), help="checkout whose code is walked (default: this one)")
    p.add_argument("--frames", type=int, default=30, help="frames in the rendered run (default 30)")
    p.add_argument("--size", type=int, default=128, help="frame size in px (default 128)")
    p.add_argument("--workdir", default=None,
                   help="folder for the rendered run (kept for the next time) and the outputs (default: a temporary one)")
    p.add_argument("--quiet", action="store_true", help="only the counts, not the route")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    tree = Path(args.tree).resolve()
    if args.child is not None:  # in the child: walk the command and print the route, one module a line
        for mod in walk(tree, args.child):
            print("MODULE", mod)
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        sys.path.insert(0, str(HERE / "benchmarks"))
        from pipeline import render_video_run  # this checkout's renderer, whatever tree is walked

        video, poses = render_video_run(args.frames, args.size, work / f"run{args.frames}_{args.size}")
        out = Path(tempfile.mkdtemp(dir=work)) / "out"  # a fresh folder: no encoding cache, nothing to overwrite
        command = ["interpolate", "--video", str(video), "--poses", str(poses), "--keyframes", "every:10",
                   "--out", str(out)]
        child = subprocess.run([sys.executable, __file__, "--tree", str(tree), "--child", *command],
                               capture_output=True, text=True, cwd=tree)
        if child.returncode:
            sys.exit(child.stdout[-2000:] + child.stderr[-4000:])
    route = [line.split(" ", 1)[1] for line in child.stdout.splitlines() if line.startswith("MODULE ")]
    if not args.quiet:
        for i, mod in enumerate(route, 1):
            print(f"{i:4d}  {mod}")
    print(f"viewgp interpolate --video run.mp4 --poses poses.txt --keyframes every:10 ({args.frames} frames, "
          f"{args.size} px) through {tree}:")
    print(f"  {len(route)} visits to {len(set(route))} modules, {len(route) - len(set(route))} returns "
          "to a module already left")


if __name__ == "__main__":
    main()
