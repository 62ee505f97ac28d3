// wordcount, in TypeScript: the Rust example's contract
// (functions/examples/wordcount). Input {"text": "..."}; output
// {"words": N, "unique": U, "top": [[word, count], ...]} with the 5 most
// frequent lowercased alphanumeric words, ties alphabetical.
import { handler, ProcessorError, type Invocation } from '@eddy/sdk';

export const handle = handler((inv: Invocation) => {
  const { text } = inv.json<{ text?: unknown }>() ?? {};
  if (typeof text !== 'string') {
    throw new ProcessorError('bad-input', 'expected {"text": "..."}');
  }
  const freq = new Map<string, number>();
  let words = 0;
  // componentize-js's engine has no Unicode property escapes (\p{L}): a
  // letter is a character with case, or a digit.
  const alnum = (c: string) => c.toLowerCase() !== c.toUpperCase() || (c >= '0' && c <= '9');
  let word = '';
  for (const c of text.toLowerCase() + ' ') {
    if (alnum(c)) {
      word += c;
    } else if (word) {
      words += 1;
      freq.set(word, (freq.get(word) ?? 0) + 1);
      word = '';
    }
  }
  const top = [...freq.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, 5);
  return { words, unique: freq.size, top };
});
