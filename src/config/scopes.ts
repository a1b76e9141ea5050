// Momentum's fallback for delivery options: binding::domain > binding_group::domain > binding >
// binding_group > domain > global. Domain keys are literal names or /regex/ patterns; a literal
// key wins over patterns, and patterns are tried in the order they are written. The same walk
// serves the daemon (runtime values) and check-config (values as written, with their scope).
import { regexKey } from './regex-keys.js';
import type { Config } from './schema.js';
import { SCOPED_OPTIONS } from './scoped-schema.js';

export type ScopedOption = (typeof SCOPED_OPTIONS)[number];

type Options = Partial<Record<ScopedOption, unknown>>;
type DomainTable = Record<string, Options> | undefined;

/** The parts of a config (runtime or document) the fallback walks. */
interface ScopedConfig {
  domains?: DomainTable;
  bindings: Array<Options & { name: string; domains?: DomainTable }>;
  binding_groups: Array<Options & { name: string; bindings: string[]; domains?: DomainTable }>;
}

interface Resolved {
  value: unknown;
  scope: string;
}

/** The options block of `table` that applies to `domain`, and the key that matched. */
function domainEntry(table: DomainTable, domain: string): { key: string; options: Options } | undefined {
  if (!table) return undefined;
  const literal = table[domain];
  if (literal) return { key: domain, options: literal };
  for (const [key, options] of Object.entries(table)) {
    if (regexKey(key)?.test(domain)) return { key, options };
  }
  return undefined;
}

/** The scopes that apply to (binding, domain), most specific first. */
function chain(cfg: ScopedConfig & Options, binding: string, domain: string): Array<{ scope: string; options: Options }> {
  const b = cfg.bindings.find((x) => x.name === binding);
  // A binding listed in several groups takes its options from the first.
  const g = cfg.binding_groups.find((x) => x.bindings.includes(binding));
  const out: Array<{ scope: string; options: Options }> = [];
  const bd = domainEntry(b?.domains, domain);
  if (bd) out.push({ scope: `binding ${binding} :: domain ${bd.key}`, options: bd.options });
  const gd = domainEntry(g?.domains, domain);
  if (gd) out.push({ scope: `binding_group ${g!.name} :: domain ${gd.key}`, options: gd.options });
  if (b) out.push({ scope: `binding ${binding}`, options: b });
  if (g) out.push({ scope: `binding_group ${g.name}`, options: g });
  const d = domainEntry(cfg.domains, domain);
  if (d) out.push({ scope: `domain ${d.key}`, options: d.options });
  out.push({ scope: 'global', options: cfg });
  return out;
}

/** Every scoped option for (binding, domain) with the scope it came from. */
export function explainOptions(cfg: ScopedConfig & Options, binding: string, domain: string): Record<ScopedOption, Resolved> {
  const scopes = chain(cfg, binding, domain);
  const out = {} as Record<ScopedOption, Resolved>;
  for (const key of SCOPED_OPTIONS) {
    // Options without a global default (throttles, scope_max_outbound_connections) may be unset everywhere.
    const hit = scopes.find((s) => s.options[key] !== undefined);
    out[key] = { value: hit?.options[key], scope: hit?.scope ?? 'global' };
  }
  return out;
}

/** Runtime values of the scoped options for one (binding, domain) pair. */
export type ScopedValues = Pick<Config, ScopedOption>;

/** Bounds the memo: one entry per (binding, domain) pair seen, and domains are unbounded. */
const MEMO_LIMIT = 10_000;

interface Memo {
  values: ScopedValues;
  explained: Record<ScopedOption, Resolved>;
}

export class OptionScopes {
  /** By binding, then domain: no key string is built for a lookup, which delivery makes many times a message. */
  private readonly memo = new Map<string, Map<string, Memo>>();
  private memoSize = 0;

  constructor(private cfg: Config) {}

  /** A reload: every pair's options are worked out again from the new config. */
  reconfigure(cfg: Config): void {
    this.cfg = cfg;
    this.memo.clear();
    this.memoSize = 0;
  }

  get(binding: string, domain: string): ScopedValues {
    return this.entry(binding, domain).values;
  }

  /** The scope an option's value comes from: shared budgets (throttles) are keyed by it. */
  scopeOf(binding: string, domain: string, key: ScopedOption): string {
    return this.entry(binding, domain).explained[key].scope;
  }

  private entry(binding: string, domain: string): Memo {
    let m = this.memo.get(binding)?.get(domain);
    if (!m) {
      const explained = explainOptions(this.cfg, binding, domain);
      m = { explained, values: Object.fromEntries(SCOPED_OPTIONS.map((k) => [k, explained[k].value])) as ScopedValues };
      if (this.memoSize >= MEMO_LIMIT) {
        this.memo.clear();
        this.memoSize = 0;
      }
      let domains = this.memo.get(binding);
      if (!domains) this.memo.set(binding, (domains = new Map()));
      domains.set(domain, m);
      this.memoSize++;
    }
    return m;
  }
}

/** Options of an MX host: a literal key wins over /regex/ keys, tried in the order written. */
export function hostOptions(cfg: Pick<Config, 'hosts'>, host: string): Config['hosts'][string] | undefined {
  const h = host.toLowerCase();
  return cfg.hosts[h] ?? Object.entries(cfg.hosts).find(([key]) => regexKey(key)?.test(h))?.[1];
}

/** The largest value a numeric scoped option takes in any scope (for bounds such as body TTLs). */
export function largestScopedValue(cfg: Config, key: 'message_expiration'): number {
  const values: unknown[] = [cfg[key]];
  const tables = [cfg.domains, ...cfg.bindings.map((b) => b.domains), ...cfg.binding_groups.map((g) => g.domains)];
  for (const scope of [...cfg.bindings, ...cfg.binding_groups]) values.push(scope[key]);
  for (const table of tables) for (const options of Object.values(table ?? {})) values.push(options[key]);
  return Math.max(...values.filter((v): v is number => typeof v === 'number'));
}
