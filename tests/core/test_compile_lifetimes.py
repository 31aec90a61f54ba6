"""optmm._compile_lifetimes: the variables of numba's IR statements and the variables live at each
block's entry, worked out as numba does, to the same answers, on every IR of a first ``optmm risk``
of the example book (both American engines, the escrowed spot, the closed form); and swapped in only
while optmm's functions compile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builders import run_driver
from numba import njit
from numba.core import analysis, ir, ir_utils, lowering
from numba.core.compiler import run_frontend

from optmm import _compile_lifetimes
from optmm.greeks._american import clenshaw_py

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "scenarios" / "examples"
RISK = ["risk", str(EXAMPLES / "book.csv"), "--market", str(EXAMPLES / "market.toml")]

# the command run on an empty cache, each answer of the fix checked against numba's own
CHECKED = """
import json, sys
from numba.core import analysis, ir, ir_utils, lowering
from numba.core.compiler import run_frontend
from optmm import _compile_lifetimes as lt

from numba.core import inline_closurecall, lowering, transforms, untyped_passes

numba_stmt, numba_expr, numba_live = ir.Stmt.list_vars, ir.Expr.list_vars, analysis.compute_live_map
numba_use = analysis.compute_use_defs
HOLDERS = [
    (module, name)
    for module in (analysis, ir_utils, lowering, inline_closurecall, transforms, untyped_passes)
    for name, numbas in (("compute_live_map", numba_live), ("compute_use_defs", numba_use))
    if getattr(module, name, None) is numbas
]
seen = {"stmt": 0, "expr": 0, "live": 0, "use": 0, "blocks": 0, "swaps": 0}
fast_stmt, fast_expr = lt.list_vars(ir)

def same(a, b):
    assert [id(v) for v in a] == [id(v) for v in b], (a, b)

def stmt(self):
    want = numba_stmt(self)
    same(fast_stmt(self), want)
    seen["stmt"] += 1
    return want

def expr(self):
    want = numba_expr(self)
    same(fast_expr(self), want)
    seen["expr"] += 1
    return want

def live(cfg, blocks, use, defs):
    want = numba_live(cfg, blocks, use, defs)
    assert lt.compute_live_map(cfg, blocks, use, defs) == want
    seen["live"] += 1
    seen["blocks"] = max(seen["blocks"], len(blocks))
    return want

def use(blocks):
    want = numba_use(blocks)
    got = lt.compute_use_defs(blocks)
    assert got.usemap == want.usemap and got.defmap == want.defmap
    seen["use"] += 1
    return want

def swapped_in():
    seen["swaps"] += 1
    ir.Stmt.list_vars, ir.Expr.list_vars = stmt, expr
    checked = {"compute_live_map": live, "compute_use_defs": use}
    for module, name in HOLDERS:
        setattr(module, name, checked[name])
    def back():
        ir.Stmt.list_vars, ir.Expr.list_vars = numba_stmt, numba_expr
        for module, name in HOLDERS:
            setattr(module, name, {"compute_live_map": numba_live, "compute_use_defs": numba_use}[name])
    return back

lt.swapped_in = swapped_in
from optmm.cli import main
code = main(sys.argv[2:])
json.dump({"code": code, **seen}, open(sys.argv[1], "w"))
"""


def test_every_answer_on_the_example_books_first_run_is_numbas(tmp_path: Path) -> None:
    # every kernel compiled in this process
    _, seen = run_driver(CHECKED, tmp_path, RISK, OPTMM_COMPILE_AHEAD="0")
    assert seen["code"] == 0 and seen["swaps"] >= 3, seen  # one per compile Python asked for
    # over a hundred thousand statements, hundreds of liveness maps, some of over a hundred blocks
    assert seen["stmt"] > 100_000 and seen["expr"] > 100_000, seen
    assert seen["live"] > 200 and seen["use"] > seen["live"] and seen["blocks"] > 100, seen


def test_the_live_map_of_a_loop_nest_is_numbas() -> None:
    def loops(x, n):
        acc = 0.0
        for i in range(n):
            y = x[i]
            for j in range(i):
                acc += y * x[j]
            if acc > 1.0:
                acc = acc - 1.0
        return acc

    blocks = run_frontend(loops).blocks
    cfg = analysis.compute_cfg_from_blocks(blocks)
    usedefs = analysis.compute_use_defs(blocks)
    ours = _compile_lifetimes.compute_use_defs(blocks)
    assert (ours.usemap, ours.defmap) == (usedefs.usemap, usedefs.defmap)
    want = analysis.compute_live_map(cfg, blocks, usedefs.usemap, usedefs.defmap)
    assert _compile_lifetimes.compute_live_map(cfg, blocks, usedefs.usemap, usedefs.defmap) == want
    assert sum(map(len, want.values())) > 10  # variables carried around the back edges
    stmt_list_vars, _ = _compile_lifetimes.list_vars(ir)
    for block in blocks.values():
        for stmt in block.body:
            assert [id(v) for v in stmt_list_vars(stmt)] == [id(v) for v in stmt.list_vars()]


def test_numbas_own_are_back_after_optmms_compile_and_used_for_other_code() -> None:
    def now() -> tuple[object, ...]:
        uses = (m.compute_use_defs for m in (analysis, ir_utils, lowering))
        return (ir.Stmt.list_vars, ir.Expr.list_vars, *uses, analysis.compute_live_map)

    numba_own = now()
    during: list[bool] = []
    real = _compile_lifetimes.swapped_in

    def watched():
        back = real()
        during.append(analysis.compute_live_map is _compile_lifetimes.compute_live_map)
        return back

    _compile_lifetimes.swapped_in = watched
    try:
        c = np.array([0.5, -1.25, 2.0])
        assert njit(lambda x: x + 1.0)(1.0) == 2.0  # not optmm's: not swapped in
        assert during == []
        assert njit(clenshaw_py)(c, 0.5) == clenshaw_py(c, 0.5)  # optmm's
    finally:
        _compile_lifetimes.swapped_in = real
    assert during == [True]
    assert now() == numba_own
