#!/usr/bin/env python3
"""Buildbot's side of kiln's render_cost example: the same 50 steps (a seven-word command with
four interpolations, an environment of three properties) rendered with Buildbot's Properties,
as its BuildStep does when a step starts. Prints the mean time per build.

    bench/.venv-buildbot/bin/python bench/render_buildbot.py
"""
import time

from buildbot.process.properties import Interpolate, Properties, Property


def main():
    props = Properties()
    for k, v in [("buildername", "runtests"), ("branch", "main"),
                 ("revision", "0123456789abcdef0123456789abcdef01234567"),
                 ("workername", "w1"), ("builddir", "/var/lib/worker/runtests"),
                 ("project", "kiln")]:
        props.setProperty(k, v, "Build")
    for i in range(24):
        props.setProperty(f"extra{i}", i, "Builder")
    steps = [([
        "make", "-j2", Interpolate("BUILDER=%(prop:buildername)s"),
        Interpolate("REV=%(prop:revision)s"), Interpolate("TARGET=%(prop:target:-all)s"),
        f"step{i}", Interpolate("OUT=%(prop:builddir)s/out")],
        {"BRANCH": Property("branch"), "WORKER": Property("workername"),
         "PROJECT": Property("project")}) for i in range(50)]
    builds = 200
    out = []
    t0 = time.perf_counter()
    for _ in range(builds):
        for command, env in steps:
            # Buildbot renders through Deferreds; these fire at once, without a reactor.
            props.render(command).addCallback(out.append)
            props.render(env).addCallback(out.append)
    per_build = (time.perf_counter() - t0) / builds
    assert len(out) == builds * 100 and out[0][2] == "BUILDER=runtests", out[:2]
    print(f"rendering a 50-step build: {per_build * 1e6:.1f} µs per build (mean of {builds})")


if __name__ == "__main__":
    main()
