// A shaping rule as configured: which replies it watches, what it does and to which scope.
import { z } from 'zod';
import { badRegexKeys, isRegex } from './regex-keys.js';
import { parseTrigger } from './units.js';

/** The schema of one shaping rule; `scoped` is the scoped options' shape its set action overlays. */
export function shapingRuleSchema<S extends z.ZodRawShape, DO extends z.ZodType>(scoped: S, durationOpt: () => DO) {
  const shapingPhase = z.enum(['connect', 'ehlo', 'mail', 'rcpt', 'data']);
  return z.strictObject({
    name: z.string().min(1).optional().describe('name in logs and `impulse shaping`; default: where the rule is written, such as shaping_rules[2]'),
    match: z.string().refine(isRegex, { message: 'invalid regular expression' })
      .describe('regular expression over the whole reply: code, enhanced status and text, as in "421 4.7.28 …"'),
    trigger: z.union([z.number(), z.string()]).refine((v) => parseTrigger(v) !== undefined, { message: 'expected N or N/duration, such as 3/5m' }).default(1)
      .describe('matching replies before the rule acts: N, or N within a period (N/duration)'),
    action: z.enum(['suspend', 'set', 'bounce'])
      .describe('suspend: no new connection for the scope; set: options overlaid on the scope; bounce: the scope\'s mail fails, with DSNs'),
    duration: durationOpt().describe('how long the action lasts (suspend and set: required; bounce: mail arriving within it fails too, default none)'),
    options: z.strictObject(scoped).refine((o) => Object.keys(o).length > 0, { message: 'set at least one option' }).optional().describe('for set: the delivery options in force for the scope while the action lasts'),
    domains: z.array(z.string().min(1)).optional().describe('destination domains the rule watches, literal or /regex/; default: all'),
    mx_hosts: z.array(z.string().min(1)).optional().describe('MX host names the rule watches, a suffix (google.com matches aspmx.l.google.com) or /regex/; default: all'),
    phase: z.union([shapingPhase, z.array(shapingPhase).min(1)]).optional()
      .describe('SMTP phases whose replies the rule watches: connect (greeting, connection failure), ehlo, mail, rcpt, data; default: all'),
    scope: z.enum(['binding_domain', 'domain', 'binding', 'site']).default('binding_domain')
      .describe('what the action holds: the binding × domain (Momentum\'s), the domain from every binding, the binding to every domain, or the site: every domain with that MX host, from that binding'),
  }).superRefine((r, ctx) => {
    if ((r.action === 'suspend' || r.action === 'set') && (r as { duration?: unknown }).duration === undefined) ctx.addIssue({ code: 'custom', path: ['duration'], message: `required for action ${r.action}` });
    if (r.action === 'set' && r.options === undefined) ctx.addIssue({ code: 'custom', path: ['options'], message: 'required for action set: the options to overlay' });
    if (r.action !== 'set' && r.options !== undefined) ctx.addIssue({ code: 'custom', path: ['options'], message: `only action set takes options, not ${r.action}` });
    for (const key of ['domains', 'mx_hosts'] as const) {
      for (const [i, v] of (r[key] ?? []).entries()) if (badRegexKeys({ [v]: true }).length > 0) ctx.addIssue({ code: 'custom', path: [key, i], message: `invalid regular expression ${v}` });
    }
  });
}
