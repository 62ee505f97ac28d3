// {{name}}: counts the words of {"text": "..."}.
import { handler, log, ProcessorError } from '@eddy/sdk';

export const handle = handler((inv) => {
  const { text } = inv.json();
  if (typeof text !== 'string') {
    throw new ProcessorError('bad-input', 'expected {"text": "..."}');
  }
  const words = text.split(/\s+/).filter(Boolean);
  log.info(`${words.length} words`);
  return { words: words.length };
});
