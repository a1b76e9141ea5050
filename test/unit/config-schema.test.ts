// The published JSON Schema of the configuration: what `impulse config-schema` prints is the
// committed file, every key carries its meaning and default, and a validator we did not write
// (Ajv) accepts the shipped files and refuses what the daemon refuses.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { documentSchema } from '../../src/config/schema.js';
import { runCli } from '../helpers/daemon.js';

const file = (path: string) => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const committed = readFileSync(file('config/impulse.schema.json'), 'utf8');
const schema = JSON.parse(committed) as JsonNode;

interface JsonNode {
  description?: string;
  default?: unknown;
  properties?: Record<string, JsonNode>;
  items?: JsonNode;
  additionalProperties?: JsonNode | boolean;
  anyOf?: JsonNode[];
}

/** Every key of the schema, with its path, through nested objects, lists and tables. */
function keys(node: JsonNode, path = ''): Array<[string, JsonNode]> {
  const out: Array<[string, JsonNode]> = [];
  for (const [k, v] of Object.entries(node.properties ?? {})) out.push([`${path}${k}`, v], ...keys(v, `${path}${k}.`));
  if (node.items) out.push(...keys(node.items, `${path}[].`));
  if (typeof node.additionalProperties === 'object') out.push(...keys(node.additionalProperties, `${path}*.`));
  for (const alt of node.anyOf ?? []) out.push(...keys(alt, path));
  return out;
}

function validator() {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  return ajv.compile(schema);
}

test('impulse config-schema prints config/impulse.schema.json, byte for byte', async () => {
  const r = await runCli(['config-schema']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, committed, 'config/impulse.schema.json is stale: write it again with `impulse config-schema > config/impulse.schema.json`');
});

test('every key has a description, and every key the daemon defaults shows that default (the host name in words)', () => {
  const all = keys(schema);
  assert.ok(all.length > 150, `${all.length} keys`);
  assert.deepEqual(all.filter(([, v]) => !v.description).map(([k]) => k), []);
  const defaults = documentSchema.parse({}) as Record<string, unknown>;
  for (const [key, value] of Object.entries(defaults)) {
    const shown = schema.properties![key]!;
    if (['hostname', 'node_name', 'ehlo_hostname'].includes(key)) {
      assert.equal(shown.default, undefined, key);
      assert.match(shown.description!, /default: the host name/, key);
    } else {
      assert.notEqual(shown.default, undefined, `${key} is defaulted by the daemon but shows no default`);
      // Sections are defaulted as written ({} or [{}]) and filled in key by key; plain values as the daemon takes them.
      if (typeof value !== 'object' || value === null) assert.deepEqual(shown.default, value, key);
    }
  }
});

test('the shipped config names the schema for editors, and it and the provider rules validate against it', () => {
  const text = readFileSync(file('config/impulse.yaml'), 'utf8');
  assert.equal(text.split('\n')[0], '# yaml-language-server: $schema=./impulse.schema.json');
  const validate = validator();
  assert.ok(validate(parse(text) ?? {}), JSON.stringify(validate.errors));
  const rules = parse(readFileSync(file('config/shaping/providers.yaml'), 'utf8')) as unknown[];
  const rule = new Ajv2020({ strict: false }).compile({ ...schema.properties!.shaping_rules!, $schema: undefined });
  assert.ok(rule(rules), JSON.stringify(rule.errors));
});

test('the schema refuses what the daemon refuses: an unknown key, a value outside its choices, a wrong type', () => {
  const validate = validator();
  const cases: Array<[unknown, RegExp]> = [
    [{ max_outbound_conections: 5 }, /must NOT have additional properties.*max_outbound_conections/],
    [{ tls: 'sometimes' }, /\/tls.*must be equal to one of the allowed values/],
    [{ domains: { 'example.com': { max_ready: 'many' } } }, /\/domains\/example\.com\/max_ready.*must be integer/],
    [{ redis: { shards: 0 } }, /\/redis\/shards.*must be >= 1/],
  ];
  for (const [config, expected] of cases) {
    assert.equal(validate(config), false, JSON.stringify(config));
    assert.match(validate.errors!.map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`).join('; '), expected);
  }
});
