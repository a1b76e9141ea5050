// The configuration file's JSON Schema, made from the zod schema that checks it, so editors
// complete and check keys with the same meanings and defaults the daemon applies.
import { z } from 'zod';
import { documentSchema } from './schema.js';

/** Keys whose default is this machine's host name: the published schema must not carry one machine's. */
const HOST_NAMED = new Set(['hostname', 'node_name', 'ehlo_hostname']);

/**
 * The schema of what an operator writes (zod's input side: durations and sizes as text), with
 * every key's description and default. Cross-key rules (one way to reach Redis, known binding
 * names) stay with `impulse check-config`: JSON Schema cannot say them.
 */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(documentSchema, {
    io: 'input',
    target: 'draft-2020-12',
    override: ({ zodSchema, jsonSchema, path }) => {
      // zod leaves the default out on the input side of a schema that transforms inside (dkim, bounce_class_rules).
      const def = zodSchema._zod.def;
      if ((def.type === 'default' || def.type === 'prefault') && jsonSchema.default === undefined) jsonSchema.default = structuredClone(def.defaultValue);
      const key = path.length === 2 && path[0] === 'properties' ? path[1] : undefined;
      if (typeof key === 'string' && HOST_NAMED.has(key)) {
        delete jsonSchema.default;
        if (!/default: the host name/.test(jsonSchema.description ?? '')) jsonSchema.description = `${jsonSchema.description}; default: the host name`;
      }
    },
  });
  return { ...schema, title: 'Impulse configuration' };
}
