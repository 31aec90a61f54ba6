"""The sixth fix to the cost of numba's first compile (see :mod:`optmm._compile_speed`): the variables
of numba's IR, and where each is live, worked out faster, to the same answers.

numba works out where each variable of a function's IR is used, defined and live after most of its
passes (``PostProcessor.run``: after inlining, SSA, the rewrites, the legalisation...), to insert
the ``del`` of each variable and to keep the IR's metadata current. Once optmm's rules are inlined a
kernel has thousands of variables in up to a hundred blocks or more, and three parts of it cost a
tenth of the example book's first compile:

* **The variables of a statement** (``Stmt.list_vars``, ``Expr.list_vars``): numba walks the
  statement's attributes with four ``isinstance`` checks on each (a source position, a string, an
  operator...). Here the walk dispatches on the exact types IR is made of, and falls back to the same
  checks for anything else: the same variables in the same order.
* **The variables each block uses and defines** (``analysis.compute_use_defs``): numba walks an
  assignment's right-hand side twice, once alone and once with the whole statement. Here once.
* **The variables live at each block's entry** (``analysis.compute_live_map``): two fixed points, each
  sweep uniting Python sets of variable names along every edge. Here each set is an integer with a
  bit per variable, so a union is one operation; the equations, and so their least fixed point, are
  numba's, and the answer is turned back into sets of names.

They are swapped in while numba compiles one of optmm's functions (:func:`swapped_in`, from
:func:`optmm._compile_speed._quiet`), so other code is compiled as numba does it. The test checks the
answers against numba's on every statement and block of optmm's largest kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = ["compute_live_map", "compute_use_defs", "list_vars", "swapped_in"]


_Var: Any = None  # numba's IR classes, once list_vars has been given numba's ir module
_Inst: Any = None
_Expr: Any = None
_LEAVES: set[type] = {str, int, float, bool, type(None)}


def _walk(val: Any, out: list[Any]) -> None:
    """The walk of numba's ``Inst._rec_list_vars``: every variable in ``val``, appended to ``out`` in
    numba's order; the exact types IR is made of first."""
    kind = type(val)
    if kind is _Var:
        out.append(val)
    elif kind in _LEAVES:
        return
    elif kind is _Expr:
        for v in val._kws.values():
            _walk(v, out)
    elif kind is list or kind is tuple:
        for v in val:
            _walk(v, out)
    elif kind is dict:
        for v in val.values():
            _walk(v, out)
    else:
        _other(val, out)


def _other(val: Any, out: list[Any]) -> None:
    """numba's checks, in its order, for any other type."""
    if isinstance(val, _Var):
        out.append(val)
    elif isinstance(val, _Inst):
        out.extend(val.list_vars())
    elif isinstance(val, (list, tuple)):
        for v in val:
            _walk(v, out)
    elif isinstance(val, dict):
        for v in val.values():
            _walk(v, out)


def list_vars(ir: Any) -> tuple[Callable[[Any], list[Any]], Callable[[Any], list[Any]]]:
    """``(Stmt.list_vars, Expr.list_vars)`` for numba's ``ir`` module, by :func:`_walk`."""
    global _Var, _Inst, _Expr
    _Var, _Inst, _Expr = ir.Var, ir.Inst, ir.Expr
    _LEAVES.add(ir.Loc)

    def stmt_list_vars(self: Any) -> list[Any]:
        out: list[Any] = []
        _walk(self.__dict__, out)
        return out

    def expr_list_vars(self: Any) -> list[Any]:
        out: list[Any] = []
        for v in self._kws.values():
            _walk(v, out)
        return out

    return stmt_list_vars, expr_list_vars


def _names(bits: int, names: list[str]) -> set[str]:
    """The names of the bits set in ``bits``."""
    if not bits:
        return set()
    raw = np.frombuffer(bits.to_bytes((bits.bit_length() + 7) // 8, "little"), dtype=np.uint8)
    return {names[i] for i in np.flatnonzero(np.unpackbits(raw, bitorder="little")).tolist()}


def compute_use_defs(blocks: dict[int, Any]) -> Any:
    """``numba.core.analysis.compute_use_defs``: the variables each block uses before it defines them,
    and those it defines. An assignment's right-hand side is walked once, where numba walks it a
    second time with the whole statement (whose variables are the target's and the right-hand
    side's; only which names, not their order, enters the sets)."""
    from numba.core import analysis, ir

    extensions = analysis.ir_extension_usedefs
    rhs_types = (ir.Arg, ir.Const, ir.Global, ir.FreeVar)
    use_map: dict[int, set[str]] = {}
    def_map: dict[int, set[str]] = {}
    for offset, block in blocks.items():
        use: set[str] = set()
        defs: set[str] = set()
        use_map[offset], def_map[offset] = use, defs
        for stmt in block.body:
            if type(stmt) in extensions:
                extensions[type(stmt)](stmt, use, defs)
                continue
            if isinstance(stmt, ir.Assign):
                value = stmt.value
                if isinstance(value, ir.Inst):
                    rhs = value.list_vars()
                elif isinstance(value, ir.Var):
                    rhs = [value]
                elif isinstance(value, rhs_types):
                    rhs = []
                else:
                    raise AssertionError("unreachable", type(value))
                names = [v.name for v in rhs]
                target = stmt.target.name
                if target not in names:
                    defs.add(target)
                names.append(target)
            else:
                names = [v.name for v in stmt.list_vars()]
            for name in names:
                if name not in defs:
                    use.add(name)
    return analysis._use_defs_result(usemap=use_map, defmap=def_map)


def compute_live_map(
    cfg: Any, blocks: dict[int, Any], var_use_map: dict[int, set[str]], var_def_map: dict[int, set[str]]
) -> dict[int, set[str]]:
    """``numba.core.analysis.compute_live_map``: the variables that must be alive at the entry of each
    block, with a bit per variable. The definitions that reach a block (those defined or used in any
    block from which it can be reached), then the live variables pushed back along the edges (live in
    a successor, reaching the block, not defined in it), each iterated until nothing changes."""
    index: dict[str, int] = {}

    def bits(names: Iterable[str]) -> int:
        b = 0
        for name in names:
            i = index.get(name)
            if i is None:
                i = index[name] = len(index)
            b |= 1 << i
        return b

    order = cfg.topo_order()
    use = {k: bits(v) for k, v in var_use_map.items()}
    defs = {k: bits(v) for k, v in var_def_map.items()}
    reach: dict[int, int] = {}
    changed = True
    while changed:
        changed = False
        for offset in order:
            here = reach.get(offset, 0)
            r = here | defs[offset] | use[offset]
            if r != here:
                reach[offset], changed = r, True
            for out, _ in cfg.successors(offset):
                there = reach.get(out, 0)
                if there | r != there:
                    reach[out], changed = there | r, True
    live = {offset: use[offset] for offset in blocks}
    changed = True
    while changed:
        changed = False
        for offset in reversed(order):
            here = live[offset]
            for inc, _ in cfg.predecessors(offset):
                before = live[inc]
                after = before | (here & reach.get(inc, 0) & ~defs[inc])
                if after != before:
                    live[inc], changed = after, True
    names = list(index)
    return {offset: _names(b, names) for offset, b in live.items()}


def swapped_in() -> Callable[[], None]:
    """Put :func:`list_vars`, :func:`compute_use_defs` and :func:`compute_live_map` in numba's place
    (in every module of numba's compiler that imported them by name); returns the function that puts
    numba's back."""
    from numba.core import analysis, inline_closurecall, ir, ir_utils, lowering, transforms, untyped_passes

    stmt_list_vars, expr_list_vars = list_vars(ir)
    ours = {"compute_live_map": compute_live_map, "compute_use_defs": compute_use_defs}
    numbas = {name: getattr(analysis, name) for name in ours}
    # the modules that hold numba's functions under their own names (imported by name)
    holders = [
        (module, name)
        for module in (analysis, ir_utils, lowering, inline_closurecall, transforms, untyped_passes)
        for name in ours
        if getattr(module, name, None) is numbas[name]
    ]
    saved = (ir.Stmt.list_vars, ir.Expr.list_vars)
    ir.Stmt.list_vars = stmt_list_vars
    ir.Expr.list_vars = expr_list_vars
    for module, name in holders:
        setattr(module, name, ours[name])

    def back() -> None:
        ir.Stmt.list_vars, ir.Expr.list_vars = saved
        for module, name in holders:
            setattr(module, name, numbas[name])

    return back
