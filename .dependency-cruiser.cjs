// The layering of docs/architecture.md, checked by `npm test`
// (test/architecture/layers.test.ts runs `depcruise src`).
//
// Folders from the top of the data flow down; a folder may import only
// folders below it:
//
//   cli → tools → smtp, milter, policy-service (fronts) → reload, metrics →
//   policy → sandbox → builtins → delivery → queue → host → config → vsl →
//   log → mail
//
// mail/ is the ground floor: plain data and pure mail logic. host/ holds the
// ports to the outside world and the HostEnv value that carries them with
// the configuration, so it sits just above config/ (whose validation reads
// vSL values, hence config above vsl).
const LAYERS = [
  ['cli'],
  ['tools'],
  ['smtp', 'milter', 'policy-service'],
  ['reload', 'metrics', 'privileges'],
  ['policy'],
  ['sandbox'],
  ['builtins'],
  ['delivery'],
  ['queue'],
  ['host'],
  ['config'],
  ['vsl'],
  ['log'],
  ['mail'],
];

const rules = [
  {
    name: 'no-cycles',
    severity: 'error',
    comment: 'Modules must not import each other, directly or in a ring. A ring closed only by type imports inside one folder (a handler and the protocol class it is given) is allowed.',
    from: { path: '^src/' },
    to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
  },
];

// A folder may not import any folder at its own level (other than itself) or above it.
LAYERS.forEach((level, i) => {
  const upper = LAYERS.slice(0, i + 1).flat();
  for (const folder of level) {
    const forbidden = upper.filter((f) => f !== folder);
    if (forbidden.length === 0) continue;
    rules.push({
      name: `layer-${folder}`,
      severity: 'error',
      comment: `src/${folder}/ may import only folders below it in docs/architecture.md`,
      from: { path: `^src/${folder}/` },
      to: { path: `^src/(${forbidden.join('|')})/` },
    });
  }
});

// Inside the language: the value model the host shares never reaches into
// the guest-only code bundled into QuickJS, and nothing outside vsl/ does.
rules.push({
  name: 'vsl-values-not-guest',
  severity: 'error',
  comment: 'src/vsl/values/ is shared with the host; src/vsl/guest/ runs only inside the sandbox',
  from: { path: '^src/vsl/values/' },
  to: { path: '^src/vsl/guest/' },
});
rules.push({
  name: 'guest-only-from-vsl',
  severity: 'error',
  comment: 'only the language (src/vsl/) knows the guest code',
  from: { path: '^src/', pathNot: '^src/vsl/' },
  to: { path: '^src/vsl/guest/' },
});

// The two files at the root of src/ wire a whole server; only cli/ imports them.
rules.push({
  name: 'root-wiring-from-cli-only',
  severity: 'error',
  comment: 'src/server.ts and src/stats.ts are imported by cli/ (and each other) only',
  from: { path: '^src/', pathNot: '^src/(cli/|server\\.ts|stats\\.ts)' },
  to: { path: '^src/(server|stats)\\.ts$' },
});

module.exports = {
  forbidden: rules,
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a layer that needs another's types depends on it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
