"""dim.core.memory: freed tensors' memory stays mapped and is reused (what every command sets up first)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dim.core.memory import ENV, reuse_freed_memory

ALLOC_AND_FREE = """
import resource, torch
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(12 * 2 ** 20)      # 48 MB (above glibc's own adaptive threshold), every page written
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""


def _faults_in_fresh_process(setup: str) -> list[int]:
    """Page faults of each of the last 5 of 20 rounds (the first ones settle where freed blocks go)."""
    code = ALLOC_AND_FREE + setup + "\nprint(*[faults() for _ in range(20)][-5:])"
    env = {k: v for k, v in os.environ.items() if k != ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return [int(v) for v in out.split()]


def test_a_large_tensor_freed_and_allocated_again_reuses_mapped_pages():
    """With it, a 48 MB tensor allocated again and again lands on pages mapped before (almost no page faults);
    with glibc's defaults each one is mapped afresh (a fault per 4 KB page), which is what it exists to avoid."""
    if not reuse_freed_memory():
        pytest.skip("not glibc: nothing to set")
    assert max(_faults_in_fresh_process("from dim.core.memory import reuse_freed_memory\nreuse_freed_memory()")) < 1000
    assert min(_faults_in_fresh_process("")) > 10_000


def test_the_environment_variable_leaves_malloc_alone():
    code = "from dim.core.memory import reuse_freed_memory; print(reuse_freed_memory())"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, ENV: "1"}).stdout.strip()
    assert got == "False"
