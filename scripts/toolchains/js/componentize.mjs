// Builds one JavaScript plugin into a component with the pinned componentize-js.
//
//   node scripts/toolchains/js/componentize.mjs --tools .toolchains/js --wit wit \
//        --world feature-plugin --source plugins/x/src/component.js --out target/plugins/x.wasm
//
// Run from the repository root: componentize-js maps the working directory into
// the build, so the entry module's relative imports (the SDK under
// guest-sdk/js) resolve. Every optional engine feature is disabled, so the
// component imports nothing but what the world imports.

import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    tools: { type: 'string' },
    wit: { type: 'string' },
    world: { type: 'string' },
    source: { type: 'string' },
    out: { type: 'string' },
  },
});
for (const key of ['tools', 'wit', 'world', 'source', 'out']) {
  if (!args[key]) {
    console.error(`componentize.mjs: --${key} is required`);
    process.exit(2);
  }
}

const entry = join(resolve(args.tools), 'node_modules/@bytecodealliance/componentize-js/src/componentize.js');
const { componentize } = await import(pathToFileURL(entry).href);

const { component } = await componentize({
  sourcePath: resolve(args.source),
  witPath: resolve(args.wit),
  worldName: args.world,
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});

const out = resolve(args.out);
await mkdir(dirname(out), { recursive: true });
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
