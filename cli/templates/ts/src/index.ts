// {{name}}: counts the words of {"text": "..."}.
import { handler, log, ProcessorError, type Invocation } from '@eddy/sdk';

export const handle = handler((inv: Invocation) => {
  const { text } = inv.json<{ text?: unknown }>();
  if (typeof text !== 'string') {
    throw new ProcessorError('bad-input', 'expected {"text": "..."}');
  }
  const words = text.split(/\s+/).filter(Boolean);
  log.info(`${words.length} words`);
  return { words: words.length };
});
