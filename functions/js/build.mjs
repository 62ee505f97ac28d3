// Builds every processor in this directory (<name>.js) into
// target/<name>.wasm with componentize-js against wit/processor.wit, with
// componentize-js's default features (stdio, random, clocks, http and the
// fetch event: `fetch` goes through wasi:http/outgoing-handler). Skips a
// component newer than its source.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wit = join(here, '..', '..', 'wit');
await mkdir(join(here, 'target'), { recursive: true });
const mtime = async (p) => (await stat(p).catch(() => null))?.mtimeMs ?? 0;
for (const file of (await readdir(here)).filter((f) => f.endsWith('.js')).sort()) {
  const src = join(here, file);
  const out = join(here, 'target', file.replace(/\.js$/, '.wasm'));
  if ((await mtime(out)) > Math.max(await mtime(src), await mtime(join(wit, 'processor.wit')))) {
    continue;
  }
  const started = Date.now();
  const { component } = await componentize({ sourcePath: src, witPath: wit, worldName: 'processor' });
  await writeFile(out, component);
  console.log(`js: ${out} (${component.length} bytes, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
