// fanout, in TypeScript: the Rust example's contract
// (functions/examples/fanout). Input {"branch": B, "depth": D}; below depth
// D each invocation emits B follow-ups to its own function with the same
// payload; output {"depth": d, "emitted": n}.
import { handler, emit, log, ProcessorError, type Invocation } from '@eddy/sdk';

interface Plan {
  branch: number;
  depth: number;
  log?: boolean;
}

export const handle = handler((inv: Invocation) => {
  const plan = inv.json<Plan>();
  if (!Number.isInteger(plan?.branch) || !Number.isInteger(plan?.depth)) {
    throw new ProcessorError('bad-input', 'expected {"branch": B, "depth": D}');
  }
  const n = inv.depth < plan.depth ? plan.branch : 0;
  if (plan.log) log.info(`depth ${inv.depth}: emitting ${n}`);
  for (let i = 0; i < n; i++) emit(inv.function, plan);
  return { depth: inv.depth, emitted: n };
});
