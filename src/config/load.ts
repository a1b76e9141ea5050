// Reads, validates and normalises the YAML config. Every problem is reported, each with the
// path of the key that caused it, so an operator fixes a file in one pass.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { type Config, type ConfigDocument, documentSchema, runtimeSchema } from './schema.js';

export type LoadResult =
  | { ok: true; config: Config; document: ConfigDocument; path: string }
  | { ok: false; errors: string[]; path: string };

function issuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out ? `.${String(part)}` : String(part);
  return out || '(top level)';
}

function describeIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${issuePath([...issue.path, key])}: unknown key`);
    }
    return [`${issuePath(issue.path)}: ${issue.message}`];
  });
}

/**
 * Appends the rules of each shaping_rules_files entry to config.shaping_rules (the document keeps
 * the file names as written) and names every unnamed rule after where it is written.
 */
function loadShapingRules(config: Config, base: string): string[] {
  const errors: string[] = [];
  config.shaping_rules.forEach((r, i) => {
    r.name ??= `shaping_rules[${i}]`;
  });
  config.shaping_rules_files.forEach((file, f) => {
    const path = resolve(base, file);
    const where = `shaping_rules_files[${f}] (${path})`;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      errors.push(`${where}: cannot read: ${(err as Error).message}`);
      return;
    }
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) {
      errors.push(...doc.errors.map((e) => `${where}: YAML: ${e.message}`));
      return;
    }
    const rules = runtimeSchema.shape.shaping_rules.safeParse(doc.toJS() ?? []);
    if (!rules.success) {
      errors.push(...describeIssues(rules.error.issues).map((e) => `${where}: ${e}`));
      return;
    }
    rules.data.forEach((r, i) => {
      r.name ??= `${file}[${i}]`;
    });
    config.shaping_rules.push(...rules.data);
  });
  return errors;
}

export function parseConfigText(text: string, path: string): LoadResult {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return { ok: false, path, errors: doc.errors.map((e) => `YAML: ${e.message}`) };
  }
  const raw = doc.toJS() ?? {};
  const runtime = runtimeSchema.safeParse(raw);
  if (!runtime.success) return { ok: false, path, errors: describeIssues(runtime.error.issues) };
  const document = documentSchema.parse(raw);
  const base = dirname(resolve(path));
  const config = runtime.data;
  config.redis.dir = resolve(base, config.redis.dir);
  for (const l of config.listen) {
    if (l.tls) l.tls = { cert: resolve(base, l.tls.cert), key: resolve(base, l.tls.key) };
    if (l.auth) l.auth.users_file = resolve(base, l.auth.users_file);
  }
  config.admin.socket = resolve(base, config.admin.socket);
  if (config.admin.token_file) config.admin.token_file = resolve(base, config.admin.token_file);
  for (const k of config.dkim) k.key_file = resolve(base, k.key_file);
  if (config.tls_ca_file) config.tls_ca_file = resolve(base, config.tls_ca_file);
  const shapingErrors = loadShapingRules(config, base);
  if (shapingErrors.length > 0) return { ok: false, path, errors: shapingErrors };
  return { ok: true, config, document, path };
}

export function loadConfig(path: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ok: false, path, errors: [`cannot read ${path}: ${(err as Error).message}`] };
  }
  return parseConfigText(text, path);
}

export type LoadedConfig = Extract<LoadResult, { ok: true }>;
