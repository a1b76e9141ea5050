// Guards the shape of src/: file length, a role comment on top, no import cycles, no unused exports.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled tests run from dist/test/unit/; the TypeScript sources sit at the repository root.
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const srcDir = join(root, 'src');
const testDir = join(root, 'test');
const MAX_LINES = 400;

// Exports that no other file imports by name but that are still needed, each with its reason.
// `file` is a path from the repository root, or a folder ending in `/`.
const UNUSED_EXPORT_ALLOWED: ReadonlyArray<{ file: string; name: string; reason: string }> = [
  { file: 'src/cli/commands/', name: 'register', reason: 'cli/index.ts calls it on each command module it lists' },
];

interface Source { path: string; rel: string; text: string; code: string; bare: string }
interface Import { from: string; to: string; names: string[]; namespace?: string }

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).sort().map((f) => join(dir, f));
}

// Two copies of the text with the same length and line breaks: `code` without comments, and
// `bare` also without the contents of strings, templates and regex literals (expressions inside
// `${}` stay), so that names there never count as code.
function mask(text: string): { code: string; bare: string } {
  const code = text.split('');
  const bare = text.split('');
  const blank = (chars: string[], from: number, to: number): void => {
    for (let k = from; k < to && k < chars.length; k++) if (chars[k] !== '\n') chars[k] = ' ';
  };
  const depths: number[] = []; // open braces inside each enclosing `${ ... }`
  let i = 0;
  let last = ''; // last significant character, to tell a regex literal from a division
  const template = (): void => {
    const start = i;
    while (i < text.length && text[i] !== '`' && !(text[i] === '$' && text[i + 1] === '{')) i += text[i] === '\\' ? 2 : 1;
    blank(bare, start, i);
    if (text[i] === '$') depths.push(0);
    i += text[i] === '$' ? 2 : 1;
    last = text[i - 1] === '{' ? '{' : 'a';
  };
  while (i < text.length) {
    const c = text[i];
    const d = text[i + 1];
    if (c === '/' && (d === '/' || d === '*')) {
      const close = d === '/' ? text.indexOf('\n', i) : text.indexOf('*/', i + 2);
      const end = close < 0 ? text.length : d === '/' ? close : close + 2;
      blank(code, i, end);
      blank(bare, i, end);
      i = end;
    } else if (c === "'" || c === '"' || (c === '/' && !/[\w$)\]]/.test(last))) {
      let j = i + 1;
      let inClass = false;
      while (j < text.length && text[j] !== '\n' && (text[j] !== c || inClass)) {
        if (c === '/' && (text[j] === '[' || text[j] === ']')) inClass = text[j] === '[';
        j += text[j] === '\\' ? 2 : 1;
      }
      blank(bare, i + 1, j);
      i = j + 1;
      last = 'a';
    } else if (c === '`') {
      i++;
      template();
    } else if (c === '}' && depths.length > 0 && depths[depths.length - 1] === 0) {
      depths.pop();
      i++;
      template();
    } else {
      if (depths.length > 0 && (c === '{' || c === '}')) depths[depths.length - 1] += c === '{' ? 1 : -1;
      if (!/\s/.test(c)) last = c;
      i++;
    }
  }
  return { code: code.join(''), bare: bare.join('') };
}

function load(path: string): Source {
  const text = readFileSync(path, 'utf8');
  return { path, rel: relative(root, path).split(sep).join('/'), text, ...mask(text) };
}

const sources = [...tsFiles(srcDir), ...tsFiles(testDir)].map(load);
const srcFiles = sources.filter((s) => s.path.startsWith(srcDir + sep));
const short = (s: Source): string => s.rel.replace(/^src\//, '');
const byPath = new Map(sources.map((s) => [s.path, s]));

const escape = (name: string): string => name.replace(/\$/g, '\\$');

function lineCount(text: string): number {
  const lines = text.split('\n').length;
  return text.endsWith('\n') ? lines - 1 : lines;
}

// Names in an `{ a, type B, c as d }` list, as the exporting file spells them.
function names(list: string | undefined): string[] {
  return (list ?? '').split(',').map((n) => n.trim().replace(/^type\s+/, '').split(/[\s:]/)[0]!).filter(Boolean);
}

// Static imports, re-exports and dynamic imports of relative paths; regexes run on `bare` so
// nothing inside a comment or string matches, and the specifier is read back from `code`.
const IMPORT_FORMS = [
  /^[ \t]*import\s+(?:type\s+)?(?:[\w$]+\s*,?\s*)?(?:\*\s*as\s+(?<ns>[\w$]+)|\{(?<list>[^}]*)\})?\s*(?:from\s*)?['"][^'"\n]*['"]/gm,
  /^[ \t]*export\s+(?:type\s+)?(?:\*(?:\s*as\s+[\w$]+)?|\{(?<list>[^}]*)\})\s*from\s*['"][^'"\n]*['"]/gm,
  /(?:\{(?<list>[^{}]*)\}\s*=\s*)?(?:await\s+)?\bimport\s*\(\s*['"][^'"\n]*['"]\s*\)/g,
];

function importsOf(file: Source): Import[] {
  const found: Import[] = [];
  for (const m of IMPORT_FORMS.flatMap((form) => [...file.bare.matchAll(form)])) {
    const spec = /['"]([^'"\n]*)['"]\s*\)?$/.exec(file.code.slice(m.index, m.index + m[0].length))?.[1] ?? '';
    if (!spec.startsWith('.')) continue;
    const target = resolve(dirname(file.path), spec.replace(/\.js$/, '.ts'));
    const to = [target, `${target}.ts`, join(target, 'index.ts')].find((p) => byPath.has(p));
    const ns = m.groups?.['ns'];
    if (to !== undefined) found.push({ from: file.path, to, names: names(m.groups?.['list']), ...(ns ? { namespace: ns } : {}) });
  }
  return found;
}

const imports = sources.flatMap(importsOf);

test('the test reads the TypeScript sources of src/ and test/', () => {
  assert.ok(srcFiles.length > 20, `only ${srcFiles.length} files found under ${srcDir}`);
  assert.ok(srcFiles.some((s) => s.rel === 'src/main.ts'), 'src/main.ts not found');
  assert.ok(sources.some((s) => s.rel === 'test/unit/architecture.test.ts'), 'test/ sources not found');
  for (const s of sources) assert.equal(lineCount(s.code), lineCount(s.text), `${s.rel}: masking changed line count`);
});

test(`no file under src/ is longer than ${MAX_LINES} lines`, () => {
  const long = srcFiles.filter((s) => lineCount(s.text) > MAX_LINES).map((s) => `${short(s)}: ${lineCount(s.text)} lines`);
  assert.deepEqual(long, [], `files over ${MAX_LINES} lines:\n  ${long.join('\n  ')}`);
});

test('every file under src/ begins with a one-line `// ` comment stating its role', () => {
  // A shebang has to be the first line, so the comment may follow it.
  const first = (s: Source): string => s.text.replace(/^#!.*\n/, '').split('\n')[0]!;
  const bad = srcFiles.filter((s) => !first(s).startsWith('// ')).map((s) => `${short(s)}: ${JSON.stringify(first(s).slice(0, 60))}`);
  assert.deepEqual(bad, [], `files without a leading role comment:\n  ${bad.join('\n  ')}`);
});

test('no import cycle between files under src/', () => {
  const edges = new Map<string, string[]>(srcFiles.map((s) => [s.path, []]));
  for (const imp of imports) if (edges.has(imp.from) && edges.has(imp.to)) edges.get(imp.from)!.push(imp.to);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles = new Set<string>();
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of [...new Set(edges.get(node))].sort()) {
      if (state.get(next) === 'open') {
        const loop = stack.slice(stack.indexOf(next));
        const start = loop.indexOf([...loop].sort()[0]!); // the same cycle prints the same way
        const ring = [...loop.slice(start), ...loop.slice(0, start)];
        cycles.add([...ring, ring[0]!].map((p) => short(byPath.get(p)!)).join(' -> '));
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...edges.keys()].sort()) if (!state.has(node)) visit(node);
  assert.deepEqual([...cycles], [], `import cycles:\n  ${[...cycles].join('\n  ')}`);
});

test('every export under src/ is imported by another file', () => {
  const exempt = (s: Source): boolean => s.rel.startsWith('src/plugins/') || s.rel === 'src/cli/index.ts';
  const EXPORT = new RegExp('^[ \\t]*export\\s+(?:declare\\s+)?(?:async\\s+)?(?:abstract\\s+)?'
    + '(?:const\\s+enum|function\\*?|class|const|let|var|type|interface|enum)\\s+([\\w$]+)', 'gm');
  // `import * as X` counts for NAME only where `X.NAME` appears in code.
  const viaNamespace = (imp: Import, name: string): boolean => imp.namespace !== undefined
    && new RegExp(`(?<![\\w$.])${escape(imp.namespace)}\\s*\\.\\s*${escape(name)}(?![\\w$])`).test(byPath.get(imp.from)!.bare);
  const unused: string[] = [];
  for (const file of srcFiles.filter((s) => !exempt(s))) {
    const incoming = imports.filter((imp) => imp.to === file.path && imp.from !== file.path);
    for (const name of new Set([...file.bare.matchAll(EXPORT)].map((m) => m[1]!))) {
      const used = incoming.some((imp) => imp.names.includes(name) || viaNamespace(imp, name));
      const allowed = UNUSED_EXPORT_ALLOWED.some((a) => a.name === name
        && (a.file.endsWith('/') ? file.rel.startsWith(a.file) : a.file === file.rel));
      if (!used && !allowed) unused.push(`${short(file)}: ${name}`);
    }
  }
  assert.deepEqual(unused, [], `exports no other file imports:\n  ${unused.join('\n  ')}`);
});
