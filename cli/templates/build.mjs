// Written by `eddy build` into .eddy/ and run from the project: bundles the
// processor with the SDK (esbuild; the component's imports stay external)
// and builds the component with componentize-js.
import { build } from 'esbuild';
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const [entry, bundle, wit, out] = process.argv.slice(2);
await build({
  entryPoints: [entry],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  target: 'es2022',
  external: ['eddy:*', 'wasi:*'],
  outfile: bundle,
  logLevel: 'warning',
});
const { component } = await componentize({ sourcePath: bundle, witPath: wit, worldName: 'processor' });
await writeFile(out, component);
