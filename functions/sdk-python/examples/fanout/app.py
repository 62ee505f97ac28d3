"""fanout, in Python: the Rust example's contract (functions/examples/fanout).

Input {"branch": B, "depth": D}; below depth D each invocation emits B
follow-ups to its own function with the same payload; output
{"depth": d, "emitted": n}.
"""

import eddy


@eddy.handler
def handle(inv: eddy.Invocation):
    plan = inv.json()
    try:
        branch, depth = int(plan["branch"]), int(plan["depth"])
    except (KeyError, TypeError, ValueError):
        raise eddy.ProcessorError("bad-input", 'expected {"branch": B, "depth": D}') from None
    n = branch if inv.depth < depth else 0
    if plan.get("log"):
        eddy.log.info(f"depth {inv.depth}: emitting {n}")
    for _ in range(n):
        eddy.emit(inv.function, plan)
    return {"depth": inv.depth, "emitted": n}
