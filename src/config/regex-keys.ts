// Domain keys written /pattern/flags match domains by regular expression, case-insensitively.

type DomainTable = Record<string, unknown> | undefined;

/** The pattern of a /regex/ key, undefined for a literal key; throws on an invalid pattern. */
export function regexKey(key: string): RegExp | undefined {
  const m = /^\/(.+)\/([a-z]*)$/.exec(key);
  return m ? new RegExp(m[1]!, m[2]!.includes('i') ? m[2] : `${m[2]}i`) : undefined;
}

/** Whether `pattern` compiles as a regular expression (a shaping rule's match). */
export function isRegex(pattern: string): boolean {
  try {
    new RegExp(pattern);
    return true;
  } catch {
    return false;
  }
}

/** Checks every /regex/ key of a domain table, for config validation. */
export function badRegexKeys(table: DomainTable): string[] {
  return Object.keys(table ?? {}).filter((k) => {
    try {
      regexKey(k);
      return false;
    } catch {
      return true;
    }
  });
}
